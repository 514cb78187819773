import fastifyRedis from '@fastify/redis'
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import { Cluster } from 'ioredis'
import { test } from 'tap'
import { flags } from '../../plugins/index.js'
import type { FlagValue } from '../../plugins/flags.js'
import { isFlagStoreUnavailableError } from '../../plugins/errors.js'
import { clusterClient, ownRedisCluster } from '../fixtures/redis-cluster.js'
import { testRedisClusterNodes, uniqueName } from '../fixtures/services.js'
import { nextEvent, waitFor, within } from '../fixtures/wait.js'
import type { Teardown } from '../fixtures/app.js'

type Nodes = Array<{ host: string, port: number }>

/** An app whose flags live on the Cluster: the client passed directly, or handed to @fastify/redis (`redis: true`). */
async function instance (t: Teardown, nodes: Nodes, names: { key: string, channel: string }, via: 'client' | '@fastify/redis' = 'client'): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
  const client: Cluster = clusterClient(t, nodes)
  if (via === 'client') {
    await app.register(flags, { defaults: { player_lookup: true }, redis: { client, ...names, commandTimeoutMs: 500 } })
  } else {
    await app.register(fastifyRedis, { client })
    await app.register(flags, { defaults: { player_lookup: true }, redis: true })
  }
  await app.ready()
  return app
}

function changeOf (app: FastifyInstance, flag: string, timeoutMs?: number): Promise<FlagValue> {
  return nextEvent<FlagValue>(`a change of "${flag}"`, (listener) => app.flags.onChange((name, value) => { if (name === flag) listener(value) }), timeoutMs)
}

const names = (): { key: string, channel: string } => ({ key: uniqueName('flags'), channel: uniqueName('flags') })

test('cluster: a change made on one app reaches another within 1 s, with the Cluster client passed directly or through @fastify/redis', async (t) => {
  const shared = names()
  const first = await instance(t, testRedisClusterNodes(), shared)
  const second = await instance(t, testRedisClusterNodes(), shared)
  const arrived = changeOf(second, 'player_lookup', 1000)
  await first.flags.disable('player_lookup')
  t.equal(await arrived, false, 'heard within 1 s')
  t.equal(second.flags.isEnabled('player_lookup'), false)

  // The default key and channel, on @fastify/redis's app.redis (a Cluster): a flag of this test's own.
  const flag = uniqueName('flag')
  const viaPlugin = await instance(t, testRedisClusterNodes(), shared, '@fastify/redis')
  const other = await instance(t, testRedisClusterNodes(), shared, '@fastify/redis')
  const heard = changeOf(other, flag, 1000)
  await viaPlugin.flags.set(flag, { percentage: 25 })
  t.same(await heard, { percentage: 25 })
})

test('cluster: with the master of the flags\' hash lost, set() is refused at once and never applied later; values are kept; changes flow again when it returns', async (t) => {
  const cluster = await ownRedisCluster(t)
  const shared = names()
  const first = await instance(t, cluster.nodes, shared)
  const second = await instance(t, cluster.nodes, shared)
  await first.flags.disable('player_lookup')
  await waitFor('the second app to hear it', () => !second.flags.isEnabled('player_lookup'))
  const master = cluster.slotOwner(shared.key)
  await cluster.stopMaster(master)

  const refused = await within('set() with the master lost', first.flags.set('player_lookup', true).then(() => 'applied', (error: unknown) => error), 2000)
  t.ok(isFlagStoreUnavailableError(refused), 'refused with FST_RESILIENCE_FLAG_STORE_UNAVAILABLE')
  t.notMatch((refused as Error).message, /127\.0\.0\.1|:\d{4,5}/, 'without a host or port')
  t.equal(first.flags.isEnabled('player_lookup'), false, 'the last known value is kept')
  t.equal(second.flags.isEnabled('player_lookup'), false)

  await cluster.restartMaster(master)
  const observer = clusterClient(t, cluster.nodes)
  // The restarted master is empty: the refused change must not have been queued and sent now.
  await waitFor('the flags to be accepted again', async () => await first.flags.set('recommendations', { percentage: 30 }).then(() => true, () => false), 30_000)
  t.equal(await observer.hget(shared.key, 'player_lookup'), null, 'the refused change never reached Redis')
  await waitFor('the second app to hear the new change', () => JSON.stringify(second.flags.get('recommendations')) === '{"percentage":30}')
  t.equal(second.flags.isEnabled('player_lookup'), false, 'values missing from the restarted master keep their last known value')
})
