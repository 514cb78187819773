import fastifyRedis from '@fastify/redis'
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { test } from 'tap'
import { startRedis } from '../../local-services/index.js'
import type { RedisServer } from '../../local-services/index.js'
import { flags } from '../../plugins/index.js'
import type { FlagValue } from '../../plugins/flags.js'
import { isFlagStoreUnavailableError, isTimeoutError } from '../../plugins/errors.js'
import { startCommandProxy } from '../fixtures/command-proxy.js'
import { captureLogs } from '../fixtures/logs.js'
import { uniqueName } from '../fixtures/services.js'
import { startTcpProxy } from '../fixtures/tcp-proxy.js'
import { freeze, ownRedis } from '../fixtures/redis-server.js'
import { nextEvent, waitFor } from '../fixtures/wait.js'
import type { Teardown } from '../fixtures/app.js'

interface Asserts { ok: (value: unknown, message: string) => unknown, notMatch: (found: string, pattern: string, message: string) => unknown }

function client (t: Teardown, port: number): Redis {
  const redis = new Redis({ host: '127.0.0.1', port, lazyConnect: false })
  redis.on('error', () => {}) // reconnect noise during the outages these tests cause
  t.teardown(() => redis.disconnect())
  return redis
}

interface Instance { app: FastifyInstance, redis: Redis, logs: ReturnType<typeof captureLogs> }

async function instance (t: Teardown, port: number, names: { key?: string, channel?: string, commandTimeoutMs?: number }): Promise<Instance> {
  const logs = captureLogs()
  const app = Fastify({ logger: { level: 'info', stream: logs.stream } })
  t.teardown(() => app.close())
  // The app's own client, with ioredis's default options (offline queue on).
  const redis = client(t, port)
  await app.register(flags, { defaults: { player_lookup: true }, redis: { client: redis, ...names } })
  await app.ready()
  return { app, redis, logs }
}

/**
 * Two instances sharing fresh keys, the first talking to Redis through a
 * command-aware proxy, an observer connection, and player_lookup enabled.
 */
async function behindProxy (t: Teardown, server: RedisServer): Promise<{ names: { key: string, channel: string }, proxy: Awaited<ReturnType<typeof startCommandProxy>>, first: Instance, second: Instance, observer: Redis }> {
  const names = { key: uniqueName('flags'), channel: uniqueName('flags') }
  const proxy = await startCommandProxy(server.port)
  t.teardown(() => proxy.close())
  const first = await instance(t, proxy.port, names)
  const second = await instance(t, server.port, names)
  const observer = client(t, server.port)
  await first.app.flags.enable('player_lookup')
  return { names, proxy, first, second, observer }
}

/** A change that succeeds once the instance's connections are back (each refusal is immediate). */
async function acceptedSoon (app: FastifyInstance, flag: string, value: FlagValue): Promise<void> {
  await waitFor(`"${flag}" to be accepted`, async () => await app.flags.set(flag, value).then(() => true, () => false))
}

/**
 * Returns once Redis has run every write `a` sent before (even one held in a
 * frozen server's socket buffer) and both instances have heard every message
 * published until then. `a` makes a change, then `b` makes one that `a` must
 * hear: Redis runs one connection's commands in order and delivers messages in
 * the order they were published, so nothing earlier can still be on its way.
 */
async function barrier (a: Instance, b: Instance): Promise<void> {
  const first = uniqueName('marker')
  const second = uniqueName('marker')
  const heardByB = changeOf(b.app, first)
  await acceptedSoon(a.app, first, true)
  await heardByB
  const heardByA = changeOf(a.app, second)
  await acceptedSoon(b.app, second, true)
  await heardByA
}

function messageOf (error: unknown): string | undefined {
  return (error as Error | undefined)?.message
}

function causeOf (error: unknown): Error | undefined {
  return (error as { cause?: Error } | undefined)?.cause
}

/** A rejection must not reveal where Redis is nor what the driver said (it may reach an API response). */
function assertNoInternals (t: Asserts, error: unknown, port: number): void {
  const message = String(messageOf(error))
  t.notMatch(message, String(port), 'the message names no port')
  t.notMatch(message, '127.0.0.1', 'nor a host')
  t.ok(causeOf(error) instanceof Error, 'the driver\'s error is kept as its cause, for logs')
}

function changeOf (app: FastifyInstance, flag: string, timeoutMs?: number): Promise<FlagValue> {
  return nextEvent<FlagValue>(`a change of "${flag}"`, (listener) => app.flags.onChange((name, value) => { if (name === flag) listener(value) }), timeoutMs)
}

async function commandCalls (redis: Redis, command: string): Promise<number> {
  const stats = await redis.info('commandstats')
  return Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(stats)?.[1] ?? 0)
}

async function subscribers (redis: Redis, channel: string): Promise<number> {
  const reply = await redis.pubsub('NUMSUB', channel) as [string, number]
  return Number(reply[1])
}

test('a change made on one instance reaches the other within 1 s, pushed, not polled', async (t) => {
  const server = await ownRedis(t)
  // Default key and channel: this Redis server belongs to this test alone.
  const first = await instance(t, server.port, {})

  // The other instance uses the app's own client from @fastify/redis (`redis: true`).
  const other = Fastify()
  t.teardown(() => other.close())
  await other.register(fastifyRedis, { url: server.url })
  await other.register(flags, { defaults: { player_lookup: true }, redis: true })
  await other.ready()

  const observer = client(t, server.port)
  const reloadsBefore = await commandCalls(observer, 'hgetall')
  const arrived = changeOf(other, 'player_lookup', 1000)
  await first.app.flags.disable('player_lookup')
  t.equal(await arrived, false, 'the other instance heard the change within 1 s')
  t.equal(other.flags.isEnabled('player_lookup'), false)
  t.equal(await commandCalls(observer, 'hgetall'), reloadsBefore, 'no instance read the hash to learn it: it was pushed')
  t.equal(await observer.hget('fastify-resilience:flags', 'player_lookup'), 'false', 'Redis holds the value')

  const late = await instance(t, server.port, {})
  t.equal(late.app.flags.isEnabled('player_lookup'), false, 'an instance started later loads the stored value')
})

test('with an app client whose offline queue is off (the example app\'s), instances still subscribe and hear changes, with no warning', async (t) => {
  const server = await ownRedis(t)
  const started: Instance[] = []
  for (let i = 0; i < 2; i++) {
    const logs = captureLogs()
    const app = Fastify({ logger: { level: 'info', stream: logs.stream } })
    t.teardown(() => app.close())
    // Fail fast, as the example app's client does: a command before the connection is up is refused, not queued.
    const redis = new Redis({ host: '127.0.0.1', port: server.port, enableOfflineQueue: false, maxRetriesPerRequest: 1 })
    redis.on('error', () => {})
    t.teardown(() => redis.disconnect())
    await app.register(flags, { defaults: { player_lookup: true }, redis: { client: redis } })
    await app.ready()
    started.push({ app, redis, logs })
  }
  const [first, second] = started as [Instance, Instance]
  const observer = client(t, server.port)
  await waitFor('both instances to subscribe', async () => await subscribers(observer, 'fastify-resilience:flags') === 2)
  const arrived = changeOf(second.app, 'player_lookup', 5_000)
  await first.app.flags.disable('player_lookup')
  t.equal(await arrived, false, 'the change was pushed to the other instance')
  for (const { logs } of started) {
    t.same(logs.lines.filter((line) => line.level >= 40).map((line) => line.msg), [], 'no warning at start-up')
  }
})

test('through a Redis outage: last values kept, set rejects clearly, changes flow again, and a cut-off instance catches up', async (t) => {
  let server = await ownRedis(t)
  const names = { key: uniqueName('flags'), channel: uniqueName('flags') }
  const proxy = await startTcpProxy(server.port)
  t.teardown(() => proxy.close())
  const direct = await instance(t, server.port, names)
  const behindProxy = await instance(t, proxy.port, names)
  const observer = client(t, server.port)

  const first = changeOf(behindProxy.app, 'player_lookup')
  await direct.app.flags.disable('player_lookup')
  t.equal(await first, false)

  // 1. Redis stops.
  await server.stop()
  await waitFor('both clients to notice the outage', () => direct.redis.status !== 'ready' && behindProxy.redis.status !== 'ready')
  t.equal(direct.app.flags.isEnabled('player_lookup'), false, 'the last known value is kept')
  t.equal(behindProxy.app.flags.isEnabled('player_lookup'), false)
  const refused = await direct.app.flags.enable('player_lookup').catch((error: unknown) => error)
  t.ok(isFlagStoreUnavailableError(refused), 'set rejects with FST_RESILIENCE_FLAG_STORE_UNAVAILABLE')
  t.equal(messageOf(refused), 'cannot change feature "player_lookup": the flag store is unavailable (Redis is unreachable)')
  assertNoInternals(t, refused, server.port)
  t.equal(direct.app.flags.isEnabled('player_lookup'), false, 'a refused change is not applied locally either')
  t.ok(direct.logs.lines.some((line) => line.msg === 'feature flags: Redis is unreachable; keeping the last known values'), 'the outage is logged')

  // 2. Redis is back (empty: it had no persistence); changes flow again.
  server = await startRedis({ port: server.port })
  t.teardown(() => server.stop())
  await waitFor('both instances to subscribe again', async () => direct.redis.status === 'ready' && behindProxy.redis.status === 'ready' &&
    await subscribers(observer, names.channel).catch(() => 0) === 2)
  t.equal(behindProxy.app.flags.isEnabled('player_lookup'), false, 'values missing from a restarted Redis keep their last known value')
  const again = changeOf(behindProxy.app, 'player_lookup')
  await acceptedSoon(direct.app, 'player_lookup', true)
  t.equal(await again, true, 'a change propagates again after the outage')
  await waitFor('the reconnection to be logged', () => direct.logs.lines.some((line) => line.msg === 'feature flags: Redis is reachable again'))

  // 3. Only one instance is cut off; a change made meanwhile reaches it when it returns.
  proxy.cut()
  await waitFor('the cut-off instance to notice', () => behindProxy.redis.status !== 'ready')
  await direct.app.flags.set('recommendations', { percentage: 30 })
  t.equal(behindProxy.app.flags.get('recommendations'), undefined, 'the cut-off instance missed the message')
  await t.rejects(behindProxy.app.flags.disable('player_lookup'), { code: 'FST_RESILIENCE_FLAG_STORE_UNAVAILABLE' })
  const caughtUp = changeOf(behindProxy.app, 'recommendations')
  proxy.restore()
  t.same(await caughtUp, { percentage: 30 }, 'on reconnecting it reloads the values and picks up the change')
})

test('a change refused while Redis is frozen is not applied when Redis thaws: not in Redis, not on any instance', async (t) => {
  const server = await ownRedis(t)
  t.teardown(() => server.process.resume())
  const names = { key: uniqueName('flags'), channel: uniqueName('flags') }
  const first = await instance(t, server.port, names)
  const second = await instance(t, server.port, names)
  const observer = client(t, server.port)
  const heard = changeOf(second.app, 'player_lookup')
  await first.app.flags.set('player_lookup', { percentage: 40 })
  t.same(await heard, { percentage: 40 }, 'with Redis healthy, a change is stored and reaches the other instance')

  await freeze(server)
  const refused = await first.app.flags.disable('player_lookup').catch((error: unknown) => error)
  t.ok(isFlagStoreUnavailableError(refused), 'set rejects with FST_RESILIENCE_FLAG_STORE_UNAVAILABLE')
  t.equal(messageOf(refused), 'cannot change feature "player_lookup": the flag store is unavailable (Redis did not confirm the change within 2000 ms)')
  assertNoInternals(t, refused, server.port)
  t.ok(isTimeoutError(causeOf(refused)), 'its cause is the timeout')

  server.process.resume()
  await barrier(first, second)
  t.equal(await observer.hget(names.key, 'player_lookup'), '{"percentage":40}', 'Redis still holds the value from before')
  t.same(first.app.flags.get('player_lookup'), { percentage: 40 }, 'the instance that was refused kept it')
  t.same(second.app.flags.get('player_lookup'), { percentage: 40 }, 'the other instance kept it')
})

test('a fenced write that reaches a frozen Redis is refused by Redis itself when it thaws', async (t) => {
  const server = await ownRedis(t)
  t.teardown(() => server.process.resume())
  const { names, proxy, first, second, observer } = await behindProxy(t, server)

  // The write leaves the app and lands in the socket buffer of a server frozen just before it arrives.
  const frozen = proxy.onceCommand('evalsha', async () => await freeze(server))
  const writesBefore = await commandCalls(observer, 'evalsha')
  const refused = await first.app.flags.disable('player_lookup').catch((error: unknown) => error)
  t.ok(isFlagStoreUnavailableError(refused), 'set rejects')
  t.equal(messageOf(refused), 'cannot change feature "player_lookup": the flag store is unavailable (Redis did not confirm the change within 2000 ms)')
  await frozen

  server.process.resume()
  await waitFor('Redis to run the write it held', async () => await commandCalls(observer, 'evalsha') > writesBefore)
  t.equal(await observer.hget(names.key, 'player_lookup'), 'true', 'Redis ran the write after its fence, and refused it')
  await barrier(first, second)
  t.equal(first.app.flags.get('player_lookup'), true, 'no instance heard of it')
  t.equal(second.app.flags.get('player_lookup'), true)
  t.notOk(first.logs.lines.some((line) => /reported as failed/.test(String(line.msg))), 'no late success is reported')
})

test('the fence assumes Redis read its clock as late as possible: a slow TIME reply leaves the write less time, and Redis refuses it', async (t) => {
  const server = await ownRedis(t)
  const names = { key: uniqueName('flags'), channel: uniqueName('flags'), commandTimeoutMs: 6000 }
  const proxy = await startCommandProxy(server.port)
  t.teardown(() => proxy.close())
  const first = await instance(t, proxy.port, names)
  const observer = client(t, server.port)
  await first.app.flags.enable('player_lookup')

  // Redis answers TIME at once; the answer takes 4 of the 6 s. Counted from
  // when Redis read its clock, 6 s would let the write through 4 s later; the
  // fence leaves it only what is left of the app's 6 s (at most 2).
  let release: NodeJS.Timeout | undefined
  t.teardown(() => clearTimeout(release))
  const slowed = proxy.onceCommand('time', () => {
    proxy.holdReplies()
    release = setTimeout(() => proxy.releaseReplies(), 4000)
  })
  const writesBefore = await commandCalls(observer, 'evalsha')
  const startedAt = Date.now()
  const refused = await first.app.flags.disable('player_lookup').catch((error: unknown) => error)
  const tookMs = Date.now() - startedAt
  t.equal(messageOf(refused), 'cannot change feature "player_lookup": the flag store is unavailable (Redis did not confirm the change within 6000 ms)')
  await slowed
  t.ok(tookMs < 6000, `Redis's refusal came back before the app gave up (${tookMs} ms)`)
  t.equal(await commandCalls(observer, 'evalsha'), writesBefore + 1, 'the write reached Redis')
  t.equal(await observer.hget(names.key, 'player_lookup'), 'true', 'and Redis refused it')
  t.equal(first.app.flags.get('player_lookup'), true)
})

test('a write applied just before its fence whose reply comes too late: set rejects, and every instance converges on what Redis holds', async (t) => {
  const server = await ownRedis(t)
  const { names, proxy, first, second, observer } = await behindProxy(t, server)

  // Redis runs the write at once; everything it sends back to the first instance is held.
  const held = proxy.onceCommand('evalsha', () => proxy.holdReplies())
  const heardBySecond = changeOf(second.app, 'player_lookup')
  const refused = await first.app.flags.disable('player_lookup').catch((error: unknown) => error)
  t.equal(messageOf(refused), 'cannot change feature "player_lookup": the flag store is unavailable (Redis did not confirm the change within 2000 ms)')
  await held
  t.equal(await observer.hget(names.key, 'player_lookup'), 'false', 'Redis applied it before its fence')
  t.equal(await heardBySecond, false, 'the other instance follows Redis')
  t.equal(first.app.flags.get('player_lookup'), true, 'the refused instance has heard nothing yet')

  const heardByFirst = changeOf(first.app, 'player_lookup')
  proxy.releaseReplies()
  t.equal(await heardByFirst, false, 'once its connections deliver, the refused instance follows Redis too')
  await waitFor('the late success to be logged', () => first.logs.lines.some((line) =>
    line.msg === 'feature flags: a change reported as failed reached Redis before its deadline and was applied; every instance follows it'))
})

test('a write lost with its connection is not sent again once the connection is back: set rejects and nothing changes', async (t) => {
  const server = await ownRedis(t)
  const { names, proxy, first, second, observer } = await behindProxy(t, server)

  // The write is lost on the way and its connection closes; the driver reconnects at once, well before the deadline.
  const dropped = proxy.dropOnceCommand('evalsha')
  const refused = await first.app.flags.disable('player_lookup').catch((error: unknown) => error)
  t.equal(messageOf(refused), 'cannot change feature "player_lookup": the flag store is unavailable (Redis did not confirm the change within 2000 ms)')
  await dropped
  await barrier(first, second)
  t.equal(await observer.hget(names.key, 'player_lookup'), 'true', 'the lost write was not sent again')
  t.equal(first.app.flags.get('player_lookup'), true)
  t.equal(second.app.flags.get('player_lookup'), true)
})

test('with the connection down, set is refused at once and not queued for later, even on an app client with the offline queue on', async (t) => {
  const server = await ownRedis(t)
  // A long timeout, so that a write waiting in a queue could not pass for one refused at once.
  const names = { key: uniqueName('flags'), channel: uniqueName('flags'), commandTimeoutMs: 20_000 }
  const proxy = await startTcpProxy(server.port)
  t.teardown(() => proxy.close())
  const first = await instance(t, proxy.port, names)
  const second = await instance(t, server.port, names)
  const observer = client(t, server.port)
  await first.app.flags.enable('player_lookup')
  t.equal(first.redis.options.enableOfflineQueue, true, 'the app\'s client queues commands while disconnected')

  proxy.cut()
  await waitFor('the app\'s client to notice', () => first.redis.status !== 'ready')
  const refused = await first.app.flags.disable('player_lookup').catch((error: unknown) => error)
  t.equal(messageOf(refused), 'cannot change feature "player_lookup": the flag store is unavailable (Redis is unreachable)', 'refused at once, not after the timeout')
  assertNoInternals(t, refused, proxy.port)

  proxy.restore()
  await waitFor('the app\'s client to reconnect', () => first.redis.status === 'ready')
  await barrier(first, second)
  t.equal(await observer.hget(names.key, 'player_lookup'), 'true', 'the refused change never reached Redis')
  t.equal(first.app.flags.get('player_lookup'), true)
  t.equal(second.app.flags.get('player_lookup'), true)
})

test('a change Redis refuses answers a 503 that says so without Redis\'s own words; the driver error stays the cause', async (t) => {
  const server = await ownRedis(t)
  const key = uniqueName('flags')
  const logs = captureLogs()
  const app = Fastify({ logger: { level: 'info', stream: logs.stream } })
  t.teardown(() => app.close())
  const token = 'admin-token-0123456789'
  await app.register(flags, { redis: { client: client(t, server.port), key, channel: key }, admin: { token } })
  await app.ready()
  const observer = client(t, server.port)
  await observer.config('SET', 'maxmemory', '1')
  t.teardown(() => observer.config('SET', 'maxmemory', '0'))

  const response = await app.inject({ method: 'PUT', url: '/admin/flags/player_lookup', headers: { authorization: `Bearer ${token}` }, payload: { enabled: false } })
  t.equal(response.statusCode, 503)
  t.same(response.json(), {
    statusCode: 503,
    code: 'FST_RESILIENCE_FLAG_STORE_UNAVAILABLE',
    error: 'Service Unavailable',
    message: 'cannot change feature "player_lookup": the flag store is unavailable (Redis refused the change)'
  })
  t.notMatch(response.body, /OOM|maxmemory|script/i, 'nothing of what Redis said')

  const refused = await app.flags.disable('player_lookup').catch((error: unknown) => error)
  t.equal(causeOf(refused)?.name, 'ReplyError', 'the cause is Redis\'s reply')
  t.match(causeOf(refused)?.message, /OOM/, 'which says why, for the logs')
  t.equal(await observer.hget(key, 'player_lookup'), null, 'nothing was stored')
  t.equal(app.flags.isEnabled('player_lookup'), true)
})

test('an instance that starts while Redis is unreachable starts on its defaults and loads the values when Redis comes', async (t) => {
  const server = await ownRedis(t)
  const names = { key: uniqueName('flags'), channel: uniqueName('flags') }
  const seed = client(t, server.port)
  await seed.hset(names.key, 'player_lookup', 'false', 'broken', 'not json', 'Bad Name', 'true')
  // The instance reaches Redis through a proxy that is cut until the values are stored.
  const proxy = await startTcpProxy(server.port)
  t.teardown(() => proxy.close())
  proxy.cut()

  const logs = captureLogs()
  const app = Fastify({ logger: { level: 'info', stream: logs.stream } })
  t.teardown(() => app.close())
  await app.register(flags, { defaults: { player_lookup: true }, redis: { client: client(t, proxy.port), ...names, commandTimeoutMs: 200 } })
  await app.ready()
  t.equal(app.flags.isEnabled('player_lookup'), true, 'started on its defaults')
  t.ok(logs.lines.some((line) => line.msg === 'feature flags: could not load the values from Redis; keeping the last known values'))

  const loaded = changeOf(app, 'player_lookup')
  proxy.restore()
  t.equal(await loaded, false, 'the stored value is loaded once Redis is reachable')
  t.same(app.flags.list(), { player_lookup: false }, 'malformed entries are ignored')
})

test('a malformed change message is ignored with a warning', async (t) => {
  const server = await ownRedis(t)
  const names = { key: uniqueName('flags'), channel: uniqueName('flags') }
  const { app, logs } = await instance(t, server.port, names)
  const publisher = client(t, server.port)
  await publisher.publish(names.channel, 'not json')
  await publisher.publish(names.channel, JSON.stringify({ name: 'BAD NAME', value: true }))
  await publisher.publish(names.channel, JSON.stringify({ name: 'ok_name', value: 'yes' }))
  const good = changeOf(app, 'ok_name')
  await publisher.publish(names.channel, JSON.stringify({ name: 'ok_name', value: { percentage: 10 } }))
  t.same(await good, { percentage: 10 }, 'a good message after the bad ones is applied')
  t.equal(logs.lines.filter((line) => line.msg === 'feature flags: ignored a malformed change message').length, 3)
})
