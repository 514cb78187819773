// The retrier's lazy signal (what the route pipeline passes: its client signal,
// built only when a retry is needed). app.retry always gets a signal or none.
import { Registry } from 'prom-client'
import { test } from 'tap'
import { OptionReader } from '../../../plugins/lib/plugin/options.js'
import { Retrier } from '../../../plugins/lib/retry/retrier.js'
import { resolveRetryDefaults, retrySettings } from '../../../plugins/lib/retry/settings.js'
import { useFakeClock } from '../../fixtures/clock.js'

const settings = retrySettings(resolveRetryDefaults(new OptionReader('test'), 'options', { maxRetries: 2, jitter: 'none', budget: false }))
const transient = (): Error => Object.assign(new Error('reset'), { code: 'ECONNRESET' })

test('a lazy signal is never built when the first attempt succeeds', async (t) => {
  const retrier = new Retrier(new Registry(), 'test')
  let built = 0
  const value = await retrier.run(settings, () => 'ok', () => { built++; return new AbortController().signal })
  t.equal(value, 'ok')
  t.equal(built, 0)
})

test('a lazy signal is built once, for the first retry, and reaches the function through its context', async (t) => {
  const clock = useFakeClock(t)
  const retrier = new Retrier(new Registry(), 'test')
  const controller = new AbortController()
  let built = 0
  const seen: AbortSignal[] = []
  const running = retrier.run(settings, ({ attempt, signal }) => {
    seen.push(signal)
    if (attempt === 0) throw transient()
    return attempt
  }, () => { built++; return controller.signal })
  await clock.tickAsync(100)
  t.equal(await running, 1)
  t.equal(built, 1)
  t.same(seen, [controller.signal, controller.signal], 'the first context built it on demand, the retry reused it')
})

test('a lazy signal that aborts during the backoff sleep ends the retries at once', async (t) => {
  const clock = useFakeClock(t)
  const retrier = new Retrier(new Registry(), 'test')
  const controller = new AbortController()
  let calls = 0
  const running = retrier.run(settings, () => {
    calls++
    throw transient()
  }, () => controller.signal)
  const outcome = t.rejects(running, /client went away/)
  await clock.tickAsync(50)
  controller.abort(new Error('client went away'))
  await outcome
  await clock.tickAsync(10_000)
  t.equal(calls, 1, 'no attempt after the abort')
})
