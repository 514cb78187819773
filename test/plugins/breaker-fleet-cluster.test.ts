import { test } from 'tap'
import type { Test } from 'tap'
import type { RedisServer } from '../../local-services/index.js'
import type { Breaker } from '../../plugins/breaker.js'
import { isCircuitOpenError } from '../../plugins/errors.js'
import { backendAt, backendClient, everyoneCounted, fleet, instances, redisCluster } from '../fixtures/fleet.js'
import type { Instance } from '../fixtures/fleet.js'
import { fleetScenarios } from '../fixtures/fleet-scenarios.js'
import { ownRedisCluster } from '../fixtures/redis-cluster.js'
import { freeze } from '../fixtures/redis-server.js'
import { waitFor, within } from '../fixtures/wait.js'

fleetScenarios(redisCluster)

const NAMES = Array.from({ length: 20 }, (_, i) => `dep${i}`)

for (const fault of ['stopped', 'frozen'] as const) {
  test(`cluster: one master ${fault} makes only its own breakers local-only; the others still trip across apps; every call is answered at once; all follow the fleet again when it returns`, async (t) => {
    await oneMasterLost(t, fault)
  })
}

async function oneMasterLost (t: Test, fault: 'stopped' | 'frozen'): Promise<void> {
  const cluster = await ownRedisCluster(t)
  const where = fleet(backendAt('cluster', cluster.nodes))
  const apps = await instances(t, where, 3, { shared: { timeoutMs: 50 } }) as [Instance, Instance, Instance]
  const owner = (name: string): number => cluster.slotOwner(`${where.names.prefix}{${name}}`)
  t.same(new Set(NAMES.map(owner)).size, 3, 'the 20 breakers live on all three masters')
  // The master to lose: one that does not hold the list of live instances (the quorum stays known).
  const lost = [0, 1, 2].find((i) => i !== cluster.slotOwner(`${where.names.prefix}instances`)) as number
  const onLost = NAMES.filter((name) => owner(name) === lost)
  const elsewhere = NAMES.filter((name) => owner(name) !== lost)
  const breakers = (name: string): Breaker[] => apps.map(({ app }) => app.breaker(name))
  for (const name of NAMES) await waitFor(`"${name}" read on every app`, () => breakers(name).every((db) => db.toJSON().shared === 'synced'))

  if (fault === 'stopped') await cluster.stopMaster(lost)
  else await freeze(cluster.masters[lost] as RedisServer)
  // Each app fails once on every breaker: 1 + 1 + 1 failures from three instances for each name.
  const started = performance.now()
  for (const name of NAMES) {
    for (const db of breakers(name)) {
      const result = await within(`a call on "${name}" with a master lost`, db.execute(async () => { throw new Error('connection refused') }).catch((error: unknown) => error), 1000)
      t.equal((result as Error).message, 'connection refused', `"${name}": the call's own error, nothing from Redis`)
    }
  }
  t.ok(performance.now() - started < 3000, 'the 60 calls were answered without waiting for Redis')
  for (const name of elsewhere) {
    // A subscription held by the lost node is made again on another within a few seconds (each try may pick it again).
    await waitFor(`"${name}" open on every app`, () => breakers(name).every((db) => db.state === 'open' && db.toJSON().shared === 'synced'), 60_000)
  }
  for (const name of onLost) {
    await waitFor(`"${name}" local-only on every app`, () => breakers(name).every((db) => db.toJSON().shared === 'local-only'))
    t.same(breakers(name).map((db) => db.state), ['closed', 'closed', 'closed'], `"${name}": each app's own breaker decides (one failure each)`)
  }
  t.ok(onLost.length > 0 && elsewhere.length > 0)

  if (fault === 'stopped') await cluster.restartMaster(lost)
  else cluster.masters[lost]?.process.resume()
  for (const name of NAMES) {
    await waitFor(`"${name}" following the fleet again`, () => breakers(name).every((db) => db.toJSON().shared === 'synced'), 30_000)
  }
  await everyoneCounted(apps, where)
  const observer = backendClient(t, where.backend)
  const name = onLost[0] as string
  if (fault === 'stopped') {
    // The restarted master is empty: its breakers' fleet state starts over.
    t.equal(await observer.hget(`${where.names.prefix}{${name}}`, 'state'), 'closed')
  }
  // A frozen master runs, once thawed, what it had received: reports given up on still count (their generation is checked).
  for (const db of breakers(name)) await db.execute(async () => { throw new Error('connection refused') }).catch(() => {})
  await waitFor(`"${name}" tripped across the apps`, () => breakers(name).every((db) => db.state === 'open'))
  t.ok(isCircuitOpenError(await breakers(name)[0]?.execute(async () => 'ok').catch((error: unknown) => error)))
}
