/**
 * Calls without a signal share one never-aborting signal: nothing may listen
 * to it, or a thousand sleeping retries print MaxListenersExceededWarning
 * during an outage, just when the on-call reads the logs.
 */
import type { FastifyInstance } from 'fastify'
import { test } from 'tap'
import { breaker, retry } from '../plugins/index.js'
import { useFakeClock } from './fixtures/clock.js'
import { testApp } from './fixtures/app.js'
import type { Teardown } from './fixtures/app.js'

// Node warns once per signal and process, so each case has a file of its own
// (the other: test/listener-leak-breaker.test.ts).

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

const reset = (): Error => Object.assign(new Error('connection reset'), { code: 'ECONNRESET' })

test('1 000 concurrent retries sleeping without a signal emit no listener-leak warning', async (t) => {
  const clock = useFakeClock(t)
  const seen = warnings(t)
  const app = await build(t)
  const attempts = new Map<number, number>()
  const calls = Array.from({ length: 1_000 }, async (_, index) => await app.retry(async () => {
    const attempt = (attempts.get(index) ?? 0) + 1
    attempts.set(index, attempt)
    if (attempt === 1) throw reset()
    return index
  }, { maxRetries: 1 }))
  await clock.tickAsync(0)
  t.equal([...attempts.values()].filter((n) => n === 1).length, 1_000, 'all 1 000 are sleeping before their retry')
  await clock.tickAsync(1_000)
  t.equal((await Promise.all(calls)).length, 1_000)
  await new Promise((resolve) => setImmediate(resolve))
  t.same(seen.map((w) => w.name), [], 'no warning')
})
