import { performance } from 'node:perf_hooks'
import fastifyRedis from '@fastify/redis'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { test } from 'tap'
import { startRedis } from '../../local-services/index.js'
import type { RedisServer } from '../../local-services/index.js'
import { breaker } from '../../plugins/index.js'
import { isCircuitOpenError } from '../../plugins/errors.js'
import { useFakeClock } from '../fixtures/clock.js'
import { backendAt, everyoneCounted, failing, fleet as fleetOn, fleetCounts, instance, instances, singleRedis, succeeding } from '../fixtures/fleet.js'
import type { Fleet, Instance } from '../fixtures/fleet.js'
import { fleetScenarios } from '../fixtures/fleet-scenarios.js'
import { testRedisUrl } from '../fixtures/services.js'
import { freeze, ownRedis } from '../fixtures/redis-server.js'
import { waitFor, within } from '../fixtures/wait.js'
import type { Teardown } from '../fixtures/app.js'

fleetScenarios(singleRedis)

/** A fleet on the tests' Redis, or on a server of the test's own. */
function fleet (server?: RedisServer): Fleet {
  return fleetOn(server === undefined ? singleRedis : backendAt('redis', [{ host: '127.0.0.1', port: server.port }]))
}

function redisClient (t: Teardown, port: number): Redis {
  const redis = new Redis({ host: '127.0.0.1', port })
  redis.on('error', () => {})
  t.teardown(() => redis.disconnect())
  return redis
}

test('shared: false keeps a breaker local; options are checked', async (t) => {
  const where = fleet()
  const [a, b] = await instances(t, where, 2) as [Instance, Instance]
  const localA = a.app.breaker('local', { shared: false })
  const localB = b.app.breaker('local', { shared: false })
  t.equal(localA.toJSON().shared, undefined, 'a local breaker has no shared field')
  for (const db of [localA, localB]) await failing(db)
  await failing(localA)
  t.equal(localA.state, 'closed', '3 failures from two instances do not trip local breakers')

  const app = Fastify()
  t.teardown(() => app.close())
  await t.rejects(async () => { await app.register(breaker, { shared: { redis: true } }) }, { name: 'TypeError', message: /"shared.redis.client" must be an ioredis client, or @fastify\/redis registered before the breaker plugin/ })
  for (const [shared, message] of [
    [{ redis: true, quorum: 0 }, /"shared.quorum" must be an integer >= 1 \(got 0\)/],
    [{ redis: 'yes' }, /"shared.redis" must be true or \{ client, prefix, channel \}/],
    [{ redis: {}, timeoutMs: -1 }, /"shared.timeoutMs" must be a number >= 1/],
    [{ redis: { channel: '' } }, /"shared.redis.channel" must be a non-empty channel name/],
    [{ redis: { key: 'x' } }, /unknown option "shared.redis.key"/],
    [{ redis: { client: {} } }, /"shared.redis.client" must be an ioredis client \(got an object\)/]
  ] as const) {
    const other = Fastify()
    t.teardown(() => other.close())
    await other.register(fastifyRedis, { url: testRedisUrl(), lazyConnect: true })
    await t.rejects(async () => { await other.register(breaker, { shared: shared as never }) }, { name: 'TypeError', message }, JSON.stringify(shared))
  }
  const plain = Fastify()
  t.teardown(() => plain.close())
  await plain.register(breaker)
  t.throws(() => plain.breaker('x', { shared: true }), { name: 'TypeError', message: /"breaker\("x"\).shared" must be false unless the plugin has the shared option/ })
})

/** Every instance follows the fleet again (or has lost it). */
async function allShared (instances: Instance[], shared: 'synced' | 'local-only'): Promise<void> {
  await waitFor(`every instance ${shared}`, () => instances.every(({ db }) => db.toJSON().shared === shared))
}

const outageLogs = (instance: Instance): { lost: number, back: number } => ({
  lost: instance.logs.lines.filter((line) => /^circuit breakers: Redis is unreachable or slow/.test(line.msg)).length,
  back: instance.logs.lines.filter((line) => /^circuit breakers: Redis is reachable again/.test(line.msg)).length
})

test('Redis killed while the fleet is open: the local breakers answer every call at once, then the fleet resyncs and hears what an instance learnt alone', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  let server = await ownRedis(t)
  const where = fleet(server)
  const [a, b, c] = await instances(t, where, 3) as [Instance, Instance, Instance]
  for (const { db } of [a, b, c]) await failing(db)
  await waitFor('the fleet open', () => [a, b, c].every(({ db }) => db.state === 'open'))

  await server.stop()
  await allShared([a, b, c], 'local-only')
  const refused = await within('a refusal while Redis is down', succeeding(b.db).catch((error: unknown) => error), 1000)
  t.ok(isCircuitOpenError(refused), 'the fleet\'s known open period still holds')
  clock.tick(30_000)
  t.equal(b.db.state, 'closed', 'once it is over, each instance\'s own breaker decides (b\'s is closed)')
  t.equal(await within('a call while Redis is down', succeeding(b.db), 1000), 'ok', 'and calls go through, with no wait for Redis')
  // a's own breaker learns alone that the dependency still fails.
  for (let i = 0; i < 3; i++) await within('a failing call while Redis is down', failing(a.db), 1000)
  t.equal(a.db.state, 'open', 'a opened its own breaker')
  t.equal(c.db.state, 'closed', 'c did not hear it')

  server = await startRedis({ port: server.port })
  t.teardown(() => server.stop())
  await allShared([a, b, c], 'synced')
  // Redis came back empty (no persistence): the fleet was closed; a tells it what it learnt.
  await waitFor('c to hear the opening a reconciled', () => c.db.state === 'open')
  t.ok(c.db.retryAfterMs > 0 && c.db.retryAfterMs <= 30_000, 'for the rest of a\'s open period')
  t.same(outageLogs(a), { lost: 1, back: 1 }, 'the outage is logged once, and its end')
})

test('Redis frozen (SIGSTOP): closed-path calls never wait for it, a half-open trial waits at most timeoutMs, and the fleet resyncs when it thaws', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const server = await ownRedis(t)
  const where = fleet(server)
  // The default decision timeout (50 ms); one trial for the fleet.
  const [a, b] = await instances(t, where, 2, { shared: { timeoutMs: 50 }, db: { halfOpenAfterMs: 1000, halfOpenMaxCalls: 1 }, logLevel: 'debug' }) as [Instance, Instance]
  const local = a.app.breaker('other')
  await waitFor('"other" to follow the fleet', () => local.toJSON().shared === 'synced')
  await freeze(server)
  t.equal(await within('a closed-path call with Redis frozen', succeeding(local), 1000), 'ok')
  await within('a failing closed-path call with Redis frozen', failing(local), 1000)
  // a called Redis for "other" (to send the failure): that breaker knows Redis is frozen, "db" has not asked it anything.
  await waitFor('"other" to decide alone', () => local.toJSON().shared === 'local-only')
  t.equal(a.db.toJSON().shared, 'synced', 'availability is per breaker')
  // The subscription hears nothing either: within 3 s every breaker decides alone, b's too.
  await allShared([a, b], 'local-only')
  await waitFor('a to try reading the fleet\'s state again, in vain', () => a.logs.lines.some((line) => line.msg === 'circuit breakers: Redis is still unreachable or slow' && line.during === 'reading the fleet\'s state'))
  server.process.resume()
  await allShared([a, b], 'synced')
  await waitFor('"other" to follow the fleet again', () => local.toJSON().shared === 'synced')

  for (const { db } of [a, a, b]) await failing(db)
  await waitFor('the fleet open', () => a.db.state === 'open' && b.db.state === 'open')
  clock.tick(1000)
  await freeze(server)
  const started = performance.now()
  t.equal(await within('a trial with Redis frozen', succeeding(a.db), 1000), 'ok', 'the trial is left to a\'s own (closed) breaker')
  t.ok(performance.now() - started >= 45, 'after waiting for Redis about timeoutMs')
  t.equal(a.db.toJSON().shared, 'local-only')
  server.process.resume()
  await allShared([a, b], 'synced')
  // The trial Redis granted after a gave up was handed back: b can take the only slot, and closes the fleet.
  await waitFor('b to get the trial and close the fleet', async () => await succeeding(b.db).catch(() => 'refused') === 'ok' && b.db.state === 'closed')
  t.same(outageLogs(a), { lost: 2, back: 2 }, 'each outage logged once, with its end')
})

test('an app that closes while Redis is frozen and an update is on its way logs no outage: its commands fail because it closes', async (t) => {
  const server = await ownRedis(t)
  const where = fleet(server)
  const [a] = await instances(t, where, 1) as [Instance]
  await freeze(server)
  // The failure is sent at once, and waits for the frozen Redis.
  await failing(a.db)
  const closing = performance.now()
  await a.app.close()
  server.process.resume()
  // Closing waited the goodbye's full second (Redis frozen); the update, sent earlier, was given up before that.
  t.ok(performance.now() - closing >= 900, 'the goodbye was bounded by its second')
  t.notOk(a.logs.lines.some((line) => /^circuit breakers: Redis is (unreachable|still)/.test(line.msg)), 'no outage logged for a closing app')
})

test('an isolation survives a Redis restart: the holder asserts it again on resync', async (t) => {
  let server = await ownRedis(t)
  const where = fleet(server)
  const [a, b] = await instances(t, where, 2) as [Instance, Instance]
  const handle = a.db.isolate()
  await waitFor('b isolated', () => b.db.state === 'isolated')
  await server.stop()
  await allShared([a, b], 'local-only')
  t.equal(b.db.state, 'isolated', 'a known isolation holds while Redis is down')
  server = await startRedis({ port: server.port })
  t.teardown(() => server.stop())
  await allShared([a, b], 'synced')
  const observer = redisClient(t, server.port)
  // Redis came back empty; b may read that (closed) a moment before a asserts its isolation again.
  await waitFor('b isolated again', () => b.db.state === 'isolated')
  t.equal(await observer.hlen(`${where.names.prefix}{db}:isolations`), 1, 'Redis came back empty, and a isolated it again')
  await waitFor('both instances announced again', async () => await observer.zcard(`${where.names.prefix}instances`) === 2)
  await everyoneCounted([a, b], where)
  handle.dispose()
  await waitFor('b closed once a lets go', () => b.db.state === 'closed')
})

test('Redis unreachable at start-up: the app starts within a second, its breakers decide alone, and follow the fleet once Redis comes', async (t) => {
  const probe = await startRedis()
  const port = probe.port
  await probe.stop()
  const where = fleet({ port } as RedisServer)
  const started = performance.now()
  const a = await instance(t, where, {}, 'started')
  t.ok(performance.now() - started < 5000, 'start-up is not held up for long')
  t.equal(a.db.toJSON().shared, 'local-only')
  t.equal(await succeeding(a.db), 'ok')
  t.ok(a.logs.lines.some((line) => /^circuit breakers: Redis is unreachable or slow/.test(line.msg)), 'the outage is logged')
  const server = await startRedis({ port })
  t.teardown(() => server.stop())
  await allShared([a], 'synced')
})

/**
 * Every command a client sends a Redis server that names `text`, from
 * MONITOR: not those that scripts run, nor the tests' own reads (HMGET).
 */
async function monitorCommands (t: Teardown, port: number, text: string): Promise<Array<{ command: string, args: string[] }>> {
  const seen: Array<{ command: string, args: string[] }> = []
  const monitor = await redisClient(t, port).monitor()
  t.teardown(() => monitor.disconnect())
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    const command = String(args[0]).toLowerCase()
    if (source !== 'lua' && command !== 'hmget' && args.some((arg) => arg.includes(text))) seen.push({ command, args })
  })
  return seen
}

test('the closed path sends nothing to Redis but the batched reports, and scripts are called by SHA', async (t) => {
  const server = await ownRedis(t)
  const where = fleet(server)
  // Everything sent on this fleet's keys, from the first command on a server that holds no script yet.
  const everything = await monitorCommands(t, server.port, where.names.prefix)
  const [a] = await instances(t, where, 1) as [Instance]
  const onDb = (): number => everything.filter(({ args }) => args.some((arg) => arg.includes(`${where.names.prefix}{db}`))).length
  const before = onDb()
  const observer = redisClient(t, server.port)
  // A burst of 1000 successful calls, all made within one batching period.
  await Promise.all(Array.from({ length: 1000 }, async () => await succeeding(a.db)))
  await waitFor('the burst counted by the fleet', async () => (await fleetCounts(observer, where)).calls === 1000)
  const sent = onDb() - before
  t.ok(sent >= 1 && sent <= 4, `${sent} commands on the breaker's keys for 1000 calls (a report per batch; a script's first call may add NOSCRIPT and EVAL)`)
  // A second burst: the report's script is known to the server now.
  const seen = everything.length
  await Promise.all(Array.from({ length: 1000 }, async () => await succeeding(a.db)))
  await waitFor('the second burst counted by the fleet', async () => (await fleetCounts(observer, where)).calls === 2000)
  const second = everything.slice(seen).filter(({ args }) => args.some((arg) => arg.includes(`${where.names.prefix}{db}`)))
  t.ok(second.length >= 1 && second.every(({ command }) => command === 'evalsha'), `the second burst's reports by SHA alone (${second.map(({ command }) => command).join(', ')})`)
  const evals = everything.filter(({ command }) => command === 'eval').length
  t.ok(evals <= 3, `the text of each script used (presence, read, report) sent at most once: ${evals} EVAL`)
})
