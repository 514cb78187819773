import { once } from 'node:events'
import type { Cluster } from 'ioredis'
import { test } from 'tap'
import { keySlot } from '../../local-services/index.js'
import type { RedisCluster } from '../../local-services/index.js'
import { clusterClient, ownRedisCluster } from '../fixtures/redis-cluster.js'
import { testRedisClusterNodes, uniqueName } from '../fixtures/services.js'
import { waitFor, within } from '../fixtures/wait.js'

const SLOTS = 16384

function infoField (info: string, field: string): string | undefined {
  return new RegExp(`^${field}:(.*)$`, 'm').exec(info)?.[1]?.trim()
}

async function ready (client: Cluster): Promise<void> {
  if (client.status !== 'ready') await within('the Cluster client to be ready', once(client, 'ready'))
}

/** A new key whose slot master `i` serves. */
function keyOn (cluster: RedisCluster, i: number): string {
  for (;;) {
    const key = uniqueName(`master${i}`)
    if (cluster.slotOwner(key) === i) return key
  }
}

test('the launcher\'s Redis Cluster: three masters serving all 16384 slots, and a key set through a Cluster client reads back', async (t) => {
  const nodes = testRedisClusterNodes()
  t.equal(nodes.length, 3, 'three start-up nodes')
  const client = clusterClient(t, nodes)

  const info = await client.cluster('INFO') as string
  t.equal(infoField(info, 'cluster_state'), 'ok')
  t.equal(infoField(info, 'cluster_slots_assigned'), String(SLOTS))
  t.equal(infoField(info, 'cluster_size'), '3', 'three masters serve slots')

  const ranges = await client.cluster('SLOTS')
  const served = ranges.reduce((sum, [start, end]) => sum + end - start + 1, 0)
  t.equal(served, SLOTS, 'every slot has a master')
  t.same(new Set(ranges.map(([, , master]) => master?.[1])), new Set(nodes.map(({ port }) => port)), 'the masters are the start-up nodes')
  t.ok(ranges.every((range) => range.length === 3), 'no replicas')

  const key = uniqueName('cluster')
  t.teardown(async () => await client.del(key))
  await client.set(key, 'hello', 'EX', 60)
  t.equal(await client.get(key), 'hello')

  for (const sample of [key, 'a', '{user1}.following', 'x{}y', 'é{ü}']) {
    t.equal(keySlot(sample), await client.cluster('KEYSLOT', sample), `keySlot(${sample}) agrees with CLUSTER KEYSLOT`)
  }
})

test('ownRedisCluster: a stopped master fails only its own keys, and restartMaster brings them back', async (t) => {
  const cluster = await ownRedisCluster(t)
  t.equal(cluster.masters.length, 3)
  // No offline queue and no retry of commands whose connection closed: a command for a dead master fails at once.
  const client = clusterClient(t, cluster.nodes, { enableOfflineQueue: false, retryDelayOnFailover: 0 })
  await ready(client)

  const keys = [0, 1, 2].map((i) => keyOn(cluster, i))
  for (const [i, key] of keys.entries()) {
    await client.set(key, `value ${i}`)
    // Straight to the master's own connection: it would answer MOVED if the key were not its.
    const own = client.nodes('master').find((node) => node.options.port === cluster.nodes[i]?.port)
    t.equal(await own?.get(key), `value ${i}`, `slotOwner: master ${i} holds ${key}`)
  }

  await cluster.stopMaster(1)
  t.ok(cluster.masters[1]?.process.hasExited, 'master 1 is stopped')
  await t.rejects(client.get(keys[1] as string), 'the stopped master\'s key fails')
  // Once the live masters take master 1 for failed, they go on serving their slots (cluster-require-full-coverage no).
  const live = client.nodes('master').filter((node) => node.options.port !== cluster.nodes[1]?.port)
  t.equal(live.length, 2, 'the client holds connections to the two live masters')
  await waitFor('the live masters to mark master 1 failed', async () => {
    const infos = await Promise.all(live.map(async (node) => await node.cluster('INFO') as string))
    return infos.every((info) => Number(infoField(info, 'cluster_slots_fail')) > 0 && infoField(info, 'cluster_state') === 'ok')
  })
  t.equal(await client.get(keys[0] as string), 'value 0', 'master 0 still serves its keys')
  t.equal(await client.get(keys[2] as string), 'value 2', 'master 2 still serves its keys')
  await t.rejects(client.get(keys[1] as string), 'the stopped master\'s key still fails')

  await cluster.restartMaster(1)
  t.equal(cluster.masters[1]?.process.hasExited, false, 'master 1 runs again')
  // The client finds the restarted master by itself; it may take a few attempts.
  let value: string | null | undefined
  await waitFor('the restarted master to answer through the client', async () => {
    value = await client.get(keys[1] as string).catch(() => undefined)
    return value !== undefined
  })
  t.equal(value, null, 'the restarted master is back, empty (persistence is off)')
  await client.set(keys[1] as string, 'again')
  t.equal(await client.get(keys[1] as string), 'again')
  t.equal(await client.get(keys[0] as string), 'value 0', 'the other masters kept their keys')
})
