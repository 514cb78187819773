import fastifyRedis from '@fastify/redis'
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { test } from 'tap'
import { startRedis } from '../local-services/index.js'
import type { RedisServer } from '../local-services/index.js'
import { flags } from '../plugins/index.js'
import type { FlagValue } from '../plugins/flags.js'
import { isFlagStoreUnavailableError } from '../plugins/errors.js'
import { captureLogs } from './fixtures/logs.js'
import { uniqueName } from './fixtures/services.js'
import { startTcpProxy } from './fixtures/tcp-proxy.js'
import { nextEvent, waitFor } from './fixtures/wait.js'

interface Teardown { teardown: (fn: () => unknown) => void }

/** A Redis server of this test alone: these tests stop it and count its commands. */
async function ownRedis (t: Teardown): Promise<RedisServer> {
  const server = await startRedis()
  t.teardown(() => server.stop())
  return server
}

function client (t: Teardown, port: number): Redis {
  const redis = new Redis({ host: '127.0.0.1', port, lazyConnect: false })
  redis.on('error', () => {}) // reconnect noise during the outages these tests cause
  t.teardown(() => redis.disconnect())
  return redis
}

interface Instance { app: FastifyInstance, redis: Redis, logs: ReturnType<typeof captureLogs> }

async function instance (t: Teardown, port: number, names: { key?: string, channel?: string }): Promise<Instance> {
  const logs = captureLogs()
  const app = Fastify({ logger: { level: 'info', stream: logs.stream } })
  t.teardown(() => app.close())
  const redis = client(t, port)
  await app.register(flags, { defaults: { player_lookup: true }, redis: { client: redis, ...names } })
  await app.ready()
  return { app, redis, logs }
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

  const late = await instance(t, server.port, {})
  t.equal(late.app.flags.isEnabled('player_lookup'), false, 'an instance started later loads the stored value')
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
  t.match((refused as Error).message, /^cannot change feature "player_lookup": the flag store is unavailable \(Redis connection is \w+\)$/)
  t.equal(direct.app.flags.isEnabled('player_lookup'), false, 'a refused change is not applied locally either')
  t.ok(direct.logs.lines.some((line) => line.msg === 'feature flags: Redis is unreachable; keeping the last known values'), 'the outage is logged')

  // 2. Redis is back (empty: it had no persistence); changes flow again.
  server = await startRedis({ port: server.port })
  t.teardown(() => server.stop())
  await waitFor('both instances to subscribe again', async () => direct.redis.status === 'ready' && behindProxy.redis.status === 'ready' &&
    await subscribers(observer, names.channel).catch(() => 0) === 2)
  t.equal(behindProxy.app.flags.isEnabled('player_lookup'), false, 'values missing from a restarted Redis keep their last known value')
  const again = changeOf(behindProxy.app, 'player_lookup')
  await direct.app.flags.enable('player_lookup')
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

test('a Redis paused mid-change makes set reject after commandTimeoutMs instead of hanging', async (t) => {
  const server = await ownRedis(t)
  const names = { key: uniqueName('flags'), channel: uniqueName('flags') }
  const app = Fastify()
  t.teardown(() => app.close())
  const redis = client(t, server.port)
  await app.register(flags, { redis: { client: redis, ...names, commandTimeoutMs: 200 } })
  await app.ready()
  server.process.pause()
  t.teardown(() => server.process.resume())
  const refused = await app.flags.disable('player_lookup').catch((error: unknown) => error)
  t.ok(isFlagStoreUnavailableError(refused))
  t.match((refused as Error).message, /operation timed out after 200 ms/)
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
