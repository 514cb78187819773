/**
 * local-services/ picks free ports, then starts a server on them; a port free
 * when asked for may be taken before the server binds it (seen once in CI: a
 * Cluster node's bus port). Such a start is tried again on fresh ports; a
 * start on a port the caller chose is not.
 */
import { createServer } from 'node:net'
import { once } from 'node:events'
import { test } from 'tap'
import { startRedis } from '../../local-services/index.js'
import { retryIfPortTaken } from '../../local-services/process.js'

const taken = (): Error => new Error('Redis exited during start-up: bind: Address already in use')

test('a start that lost its port is tried again, up to five times in all; any other failure is thrown at once', async (t) => {
  let calls = 0
  t.equal(await retryIfPortTaken(async () => { if (++calls < 3) throw taken(); return 'started' }), 'started')
  t.equal(calls, 3, 'two lost ports, then a start')

  calls = 0
  await t.rejects(retryIfPortTaken(async () => { calls++; throw taken() }), /Address already in use/)
  t.equal(calls, 5, 'gives up after five attempts')

  calls = 0
  await t.rejects(retryIfPortTaken(async () => { calls++; throw new Error('no such binary') }), /no such binary/)
  t.equal(calls, 1, 'another failure is not retried')
})

test('Redis on a port the caller chose, already taken, fails with the server\'s own words and is not retried', async (t) => {
  const holder = createServer()
  holder.listen(0, '127.0.0.1')
  await once(holder, 'listening')
  t.teardown(() => holder.close())
  const port = (holder.address() as { port: number }).port
  await t.rejects(startRedis({ port }), /Address already in use/)
})
