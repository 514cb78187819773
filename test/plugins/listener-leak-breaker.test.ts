/**
 * Calls without a signal share one never-aborting signal: nothing may listen
 * to it, or a thousand sleeping retries print MaxListenersExceededWarning
 * during an outage, just when the on-call reads the logs.
 */
import { test } from 'tap'
import { leakTestApp as build, warnings } from '../fixtures/listener-leak.js'

// Node warns once per signal and process, so each case has a file of its own
// (the other: test/plugins/listener-leak-retry.test.ts).

test('1 000 concurrent breaker calls with timeoutMs and no signal emit no listener-leak warning', async (t) => {
  const seen = warnings(t)
  const app = await build(t)
  const gates: Array<() => void> = []
  const calls = Array.from({ length: 1_000 }, async () => await app.breaker('db', { timeoutMs: 60_000 }).execute(async () => {
    await new Promise<void>((resolve) => gates.push(resolve))
    return 'ok'
  }))
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(gates.length, 1_000, 'all 1 000 are running')
  for (const open of gates) open()
  await Promise.all(calls)
  await new Promise((resolve) => setImmediate(resolve))
  t.same(seen.map((w) => w.name), [], 'no warning')
})
