/**
 * Calls without a signal share one never-aborting signal: nothing may listen
 * to it, or a thousand sleeping retries print MaxListenersExceededWarning
 * during an outage, just when the on-call reads the logs.
 */
import { test } from 'tap'
import { useFakeClock } from '../fixtures/clock.js'
import { leakTestApp as build, warnings } from '../fixtures/listener-leak.js'

// Node warns once per signal and process, so each case has a file of its own
// (the other: test/plugins/listener-leak-breaker.test.ts).

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
