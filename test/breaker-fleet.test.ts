import { performance } from 'node:perf_hooks'
import fastifyRedis from '@fastify/redis'
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { test } from 'tap'
import { startRedis } from '../local-services/index.js'
import type { RedisServer } from '../local-services/index.js'
import { breaker } from '../plugins/index.js'
import type { Breaker, BreakerOptions, SharedBreakerOptions } from '../plugins/breaker.js'
import { isCircuitOpenError } from '../plugins/errors.js'
import { useFakeClock, deferred } from './fixtures/clock.js'
import { captureLogs } from './fixtures/logs.js'
import { testRedisUrl, uniqueName } from './fixtures/services.js'
import { freeze, ownRedis } from './fixtures/redis-server.js'
import { waitFor, within } from './fixtures/wait.js'
import type { Teardown } from './fixtures/app.js'

/** One instance of the service: an app with its own Redis client and its fleet-wide "db" breaker. */
interface Instance { app: FastifyInstance, db: Breaker, logs: ReturnType<typeof captureLogs> }

interface Fleet { names: { prefix: string, channel: string }, port: number }

function redisClient (t: Teardown, port: number): Redis {
  const redis = new Redis({ host: '127.0.0.1', port })
  redis.on('error', () => {}) // reconnect noise during the outages these tests cause
  t.teardown(() => redis.disconnect())
  return redis
}

/** Keys and channel of their own on the tests' Redis, or on `server`. */
function fleet (server?: RedisServer): Fleet {
  return { names: { prefix: `${uniqueName('breaker')}:`, channel: uniqueName('breakers') }, port: server?.port ?? Number(new URL(testRedisUrl()).port) }
}

async function instance (t: Teardown, { names, port }: Fleet, options: { shared?: Partial<SharedBreakerOptions>, db?: BreakerOptions, logLevel?: string } = {}): Promise<Instance> {
  const logs = captureLogs()
  const app = Fastify({ logger: { level: options.logLevel ?? 'info', stream: logs.stream } })
  t.teardown(() => app.close())
  // A generous timeout for trials: a busy test machine must not send them to the local breaker.
  await app.register(breaker, { shared: { redis: { client: redisClient(t, port), ...names }, timeoutMs: 5000, ...options.shared } })
  await app.ready()
  return { app, db: app.breaker('db', options.db), logs }
}

async function instances (t: Teardown, where: Fleet, count: number, options?: Parameters<typeof instance>[2]): Promise<Instance[]> {
  const all: Instance[] = []
  for (let i = 0; i < count; i++) all.push(await instance(t, where, options))
  return all
}

const failing = async (db: Breaker): Promise<unknown> => await db.execute(async () => { throw new Error('connection refused') }).catch((error: unknown) => error)
const succeeding = async (db: Breaker): Promise<unknown> => await db.execute(async () => 'ok')

async function fleetCounts (redis: Redis, where: Fleet): Promise<{ state: string, calls: number, fails: number }> {
  const [state, calls, fails] = await redis.hmget(`${where.names.prefix}{db}`, 'state', 'calls', 'failures')
  return { state: state ?? 'closed', calls: Number(calls ?? 0), fails: Number(fails ?? 0) }
}

test('the fleet trips on 1 + 1 + 1 failures where no instance alone would, and an instance that made no call hears it within 1 s', async (t) => {
  const where = fleet()
  const [a, b, c, idle] = await instances(t, where, 4) as [Instance, Instance, Instance, Instance]
  t.same(idle.db.toJSON().shared, 'synced')
  await failing(a.db)
  await failing(b.db)
  t.equal(a.db.state, 'closed', 'two failures from two instances: still closed (minimumCalls 3)')
  await failing(c.db)
  await waitFor('the idle instance to hear the fleet opened', () => idle.db.state === 'open', 1000)
  for (const { db } of [a, b, c]) await waitFor('every instance open', () => db.state === 'open')
  t.ok(isCircuitOpenError(await succeeding(idle.db).catch((error: unknown) => error)), 'the idle instance refuses at once')
  t.ok(idle.db.retryAfterMs > 0 && idle.db.retryAfterMs <= 30_000, 'with the fleet\'s open period as Retry-After')
  t.ok(idle.logs.lines.some((line) => line.fleet === true && /circuit breaker "db" opened for the fleet/.test(line.msg)), 'logged as the fleet\'s change')
})

test('one bad instance opens only its own breaker: the fleet needs failures from quorum (default 2) instances', async (t) => {
  for (const quorum of [undefined, 1]) {
    const where = fleet()
    const observer = redisClient(t, where.port)
    const [bad, good1, good2] = await instances(t, where, 3, quorum === undefined ? {} : { shared: { quorum } }) as [Instance, Instance, Instance]
    await succeeding(good1.db)
    await succeeding(good2.db)
    // Successes are batched: wait until the fleet has both.
    await waitFor('the successes counted', async () => (await fleetCounts(observer, where)).calls === 2)
    for (let i = 0; i < 3; i++) await failing(bad.db)
    t.equal(bad.db.state, 'open', `quorum ${quorum ?? 'default'}: the failing instance opens its own breaker at once`)
    // 3 failures in 5 calls: the fleet's ratio (0.6) holds; only the quorum can keep it closed.
    await waitFor('the failures counted', async () => {
      const counts = await fleetCounts(observer, where)
      return counts.fails === 3 || counts.state !== 'closed'
    })
    if (quorum === undefined) {
      t.equal((await fleetCounts(observer, where)).state, 'closed', 'failures from one instance of three: the fleet stays closed')
      t.equal(await succeeding(good1.db), 'ok', 'the good instances go on calling')
      t.equal(good2.db.state, 'closed')
    } else {
      t.equal((await fleetCounts(observer, where)).state, 'open', 'with quorum 1 the same calls trip the fleet')
      await waitFor('the good instances to hear it', () => good1.db.state === 'open' && good2.db.state === 'open')
    }
  }
})

test('a lone instance trips the fleet by itself: quorum counts as 1 when only one instance reported in the window', async (t) => {
  const where = fleet()
  const [only, idle] = await instances(t, where, 2) as [Instance, Instance]
  // Two successes in one batch, then 3 failures: 3 of 5 calls.
  await Promise.all([succeeding(only.db), succeeding(only.db)])
  for (let i = 0; i < 3; i++) await failing(only.db)
  await waitFor('the idle instance to hear the fleet opened', () => idle.db.state === 'open')
})

test('half-open: exactly halfOpenMaxCalls trials across the fleet when every instance fires 10 concurrent calls, and the fleet closes when they succeed', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const where = fleet()
  const fleetOf3 = await instances(t, where, 3, { db: { halfOpenAfterMs: 5000 } })
  for (const { db } of fleetOf3) await failing(db)
  for (const { db } of fleetOf3) await waitFor('the fleet open', () => db.state === 'open')
  clock.tick(5000)
  t.same(fleetOf3.map(({ db }) => db.state), ['half-open', 'half-open', 'half-open'])
  const gate = deferred()
  let ran = 0
  const calls = fleetOf3.flatMap(({ db }) => Array.from({ length: 10 }, async () => await db.execute(async () => { ran++; await gate.promise; return 'ok' }).catch((error: unknown) => error)))
  // Every call but the trials is refused; wait for those answers, then count.
  let refused = 0
  const counting = calls.map(async (call) => { if (isCircuitOpenError(await call)) refused++ })
  await waitFor('27 refusals', () => refused === 27)
  t.equal(ran, 3, 'exactly halfOpenMaxCalls (3) trials ran across the fleet')
  gate.resolve()
  t.equal((await Promise.all(calls)).filter((result) => result === 'ok').length, 3)
  await Promise.all(counting)
  for (const { db } of fleetOf3) await waitFor('every instance closed', () => db.state === 'closed')
  t.equal(await succeeding(fleetOf3[2]?.db as Breaker), 'ok')
})

test('half-open: a failed trial re-opens the fleet, a neutral one frees its slot for another instance', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const where = fleet()
  const observer = redisClient(t, where.port)
  const [a, b] = await instances(t, where, 2, { db: { halfOpenAfterMs: 1000, halfOpenMaxCalls: 1 } }) as [Instance, Instance]
  for (let i = 0; i < 3; i++) await failing(a.db)
  await waitFor('the fleet open', () => b.db.state === 'open')
  clock.tick(1000)
  t.equal(b.db.state, 'half-open')
  await failing(b.db)
  await waitFor('a failed trial to re-open the fleet', () => b.db.state === 'open')
  t.equal(b.db.retryAfterMs, 1000, 'for the next open period')
  await waitFor('a to hear it', () => a.db.state === 'open')
  clock.tick(1000)
  const notFound = Object.assign(new Error('no such row'), { statusCode: 404 })
  const gate = deferred()
  const trial = a.db.execute(async () => { await gate.promise; throw notFound }).catch((error: unknown) => error)
  await waitFor('the only trial taken', async () => isCircuitOpenError(await succeeding(b.db).catch((error: unknown) => error)))
  gate.resolve()
  t.equal(await trial, notFound, 'the neutral trial\'s error reaches its caller')
  await waitFor('b to get the freed slot', async () => await succeeding(b.db).catch(() => 'refused') === 'ok')
  await waitFor('the fleet closed (one success of one)', async () => b.db.state === 'closed' && (await fleetCounts(observer, where)).state === 'closed')
  t.equal(a.db.state, 'half-open', 'a\'s own breaker, opened by its own failures, still takes its own trials')
})

test('a shared isolate() holds every instance open until disposed', async (t) => {
  const where = fleet()
  const [a, b, c] = await instances(t, where, 3) as [Instance, Instance, Instance]
  const handle = a.db.isolate()
  t.equal(a.db.state, 'isolated', 'at once on the isolating instance')
  for (const { db } of [b, c]) await waitFor('every instance isolated', () => db.state === 'isolated')
  t.ok(isCircuitOpenError(await succeeding(c.db).catch((error: unknown) => error)))
  // A second holder, on another instance: the fleet stays isolated until both let go.
  const second = b.db.isolate()
  handle.dispose()
  handle.dispose()
  const observer = redisClient(t, where.port)
  await waitFor('a\'s release to reach Redis', async () => await observer.hlen(`${where.names.prefix}{db}:isolations`) === 1)
  t.equal(c.db.state, 'isolated', 'b still holds it (disposing twice released one handle)')
  second.dispose()
  for (const { db } of [a, b, c]) await waitFor('every instance closed again', () => db.state === 'closed')
  t.equal(await succeeding(b.db), 'ok')
})

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

test('shared: { redis: true } uses app.redis from @fastify/redis', async (t) => {
  const apps = []
  for (let i = 0; i < 2; i++) {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(fastifyRedis, { url: testRedisUrl() })
    await app.register(breaker, { shared: { redis: true } })
    apps.push(app)
  }
  // Default keys on the shared test Redis: a unique breaker name keeps this test's state its own.
  const name = uniqueName('db')
  const [one, two] = apps.map((app) => app.breaker(name)) as [Breaker, Breaker]
  await waitFor('synced', () => one.toJSON().shared === 'synced' && two.toJSON().shared === 'synced')
  for (let i = 0; i < 3; i++) await failing(one)
  await waitFor('the other app to hear it', () => two.state === 'open')
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
  await freeze(server)
  t.equal(await within('a closed-path call with Redis frozen', succeeding(local), 1000), 'ok')
  await within('a failing closed-path call with Redis frozen', failing(local), 1000)
  // a called Redis (to send the failure), so a knows it is frozen.
  await allShared([a], 'local-only')
  await waitFor('a to try reading the fleet\'s state again, in vain', () => a.logs.lines.some((line) => line.msg === 'circuit breakers: Redis is still unreachable or slow' && line.during === 'reading the fleet\'s state'))
  server.process.resume()
  await allShared([a, b], 'synced')

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
  t.equal(b.db.state, 'isolated', 'Redis came back empty, and a isolated it again')
  handle.dispose()
  await waitFor('b closed once a lets go', () => b.db.state === 'closed')
})

test('Redis unreachable at start-up: the app starts within a second, its breakers decide alone, and follow the fleet once Redis comes', async (t) => {
  const probe = await startRedis()
  const port = probe.port
  await probe.stop()
  const where = fleet({ port } as RedisServer)
  const started = performance.now()
  const a = await instance(t, where)
  t.ok(performance.now() - started < 5000, 'start-up is not held up for long')
  t.equal(a.db.toJSON().shared, 'local-only')
  t.equal(await succeeding(a.db), 'ok')
  t.ok(a.logs.lines.some((line) => /^circuit breakers: Redis is unreachable or slow/.test(line.msg)), 'the outage is logged')
  const server = await startRedis({ port })
  t.teardown(() => server.stop())
  await allShared([a], 'synced')
})

test('junk on the channel changes nothing: malformed, unknown or forged-looking messages are ignored', async (t) => {
  const where = fleet()
  const [a] = await instances(t, where, 1) as [Instance]
  const publisher = redisClient(t, where.port)
  const junk = ['not json', '[]', 'null', '42', '{"name":"db"}', '{"name":"db","state":"weird","generation":9,"openUntil":0,"openings":0,"epoch":"x"}',
    '{"name":"db","state":"open","generation":"9","openUntil":0,"openings":0,"epoch":"x"}', '{"name":"db","state":"open","generation":9,"openUntil":0,"openings":0}',
    '{"name":"db","kind":"slot"}', '{"name":"nope","state":"open","generation":9,"openUntil":1e15,"openings":1,"epoch":"x"}', '{"name":7}', '{"kind":"presence"}', '{"kind":7}']
  for (const message of junk) await publisher.publish(where.names.channel, message)
  // Redis delivers in order: once a marker breaker hears a real change, every junk message before it was handled.
  const marker = a.app.breaker('marker')
  await waitFor('the marker to be read', () => marker.toJSON().shared === 'synced')
  marker.isolate()
  await waitFor('the marker\'s change heard', () => marker.state === 'isolated')
  t.equal(a.db.state, 'closed', 'the junk changed nothing')
  t.equal(await succeeding(a.db), 'ok')
  t.equal(a.logs.lines.filter((line) => line.msg === 'circuit breakers: ignored a malformed state from Redis').length, 4, 'the four messages about "db" with a bad state are logged')
})

test('an instance whose own breaker is open takes no trial of the fleet\'s: another instance does', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const where = fleet()
  // Trial settings for the fleet: one trial after 1 s. The bad instance's own breaker stays open for a minute.
  const [good1, good2] = await instances(t, where, 2, { db: { halfOpenAfterMs: 1000, halfOpenMaxCalls: 1 } }) as [Instance, Instance]
  const bad = await instance(t, where, { db: { halfOpenAfterMs: 60_000, halfOpenMaxCalls: 1 } })
  const observer = redisClient(t, where.port)
  await succeeding(good1.db)
  await succeeding(good2.db)
  await waitFor('the successes counted', async () => (await fleetCounts(observer, where)).calls === 2)
  for (let i = 0; i < 3; i++) await failing(bad.db)
  t.equal(bad.db.state, 'open', 'bad opened its own breaker')
  await waitFor('bad\'s failures counted (one failing instance: no trip)', async () => (await fleetCounts(observer, where)).fails === 3)
  // The fleet opens on failures from two other instances.
  await failing(good1.db)
  await failing(good2.db)
  await waitFor('the fleet open', () => good1.db.state === 'open' && good2.db.state === 'open')
  clock.tick(1000)
  t.equal(good1.db.state, 'half-open', 'the fleet is half-open')
  t.equal(bad.db.state, 'open', 'bad says its own state: open')
  let ran = false
  t.ok(isCircuitOpenError(await bad.db.execute(async () => { ran = true }).catch((error: unknown) => error)), 'bad refuses at once')
  t.notOk(ran)
  t.equal(await succeeding(good1.db), 'ok', 'good1 gets the only trial, which bad did not take')
  await waitFor('the fleet closed', () => good2.db.state === 'closed')
})
