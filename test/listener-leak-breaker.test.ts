/**
 * Calls without a signal share one never-aborting signal: nothing may listen
 * to it, or a thousand sleeping retries print MaxListenersExceededWarning
 * during an outage, just when the on-call reads the logs.
 */
import type { FastifyInstance } from 'fastify'
import { test } from 'tap'
import { breaker, retry } from '../plugins/index.js'
import { testApp } from './fixtures/app.js'
import type { Teardown } from './fixtures/app.js'

// Node warns once per signal and process, so each case has a file of its own
// (the other: test/listener-leak-retry.test.ts).

async function build (t: Teardown): Promise<FastifyInstance> {
  return await testApp(t, async (app) => {
    await app.register(breaker)
    await app.register(retry, { jitter: 'none', initialDelayMs: 1_000, budget: false })
  })
}

/** Every process warning emitted until the test ends. */
function warnings (t: Teardown): Error[] {
  const seen: Error[] = []
  const listener = (warning: Error): void => { seen.push(warning) }
  process.on('warning', listener)
  t.teardown(() => process.off('warning', listener))
  return seen
}

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
