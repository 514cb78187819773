// The retrier's loop over attempts (what app.retry and the route pipeline
// run): the attempts, the budget, the maxElapsedMs deadline and the signal,
// including a lazy one (the route pipeline's client signal, built only when a
// retry is needed). Time is a fake clock: Date, performance and the timers.
import { Registry } from 'prom-client'
import { test } from 'tap'
import { isRetryExhaustedError } from '../../../plugins/errors.js'
import { OptionReader } from '../../../plugins/lib/plugin/options.js'
import { Retrier } from '../../../plugins/lib/retry/retrier.js'
import type { RetrySettings } from '../../../plugins/lib/retry/retrier.js'
import { resolveRetryOptions, retrySettings } from '../../../plugins/lib/retry/settings.js'
import type { RetryOptions } from '../../../plugins/lib/retry/settings.js'
import { deferred, useFakeClock } from '../../fixtures/clock.js'
import { within } from '../../fixtures/wait.js'

/** Settings over the plugin's defaults, with delays of 100, 200, 400 ms ... and no budget unless given. */
const settingsOf = (options: Omit<RetryOptions, 'signal'> = {}): RetrySettings =>
  retrySettings(resolveRetryOptions(new OptionReader('test'), 'options', { jitter: 'none', budget: false, ...options }))
const settings = settingsOf({ maxRetries: 2 })
const transient = (message = 'reset'): Error => Object.assign(new Error(message), { code: 'ECONNRESET' })

/** The value of the metric line `line` matches in the registry's exposition, if any. */
async function metricValue (registry: Registry, line: RegExp): Promise<number | undefined> {
  const found = (await registry.metrics()).split('\n').find((l) => line.test(l))
  return found === undefined ? undefined : Number(found.split(' ').at(-1))
}

test('a retryable failure is retried maxRetries times, each after its backoff delay, then ends as FST_RESILIENCE_RETRY_EXHAUSTED with the attempts and the last error', async (t) => {
  const clock = useFakeClock(t)
  const registry = new Registry()
  const retrier = new Retrier(registry, 'test')
  const startedAt: number[] = []
  const seen: number[] = []
  const outcome = retrier.run(settingsOf({ maxRetries: 3, operation: 'loop' }), ({ attempt }) => {
    seen.push(attempt)
    startedAt.push(performance.now())
    throw transient(`reset ${attempt}`)
  }).catch((error: unknown) => error)
  await clock.runAllAsync()
  const error = await outcome
  t.same(seen, [0, 1, 2, 3], 'the first call and three retries, numbered')
  t.same(startedAt.slice(1).map((at, i) => at - (startedAt[i] as number)), [100, 200, 400], 'each retry after its delay')
  t.ok(isRetryExhaustedError(error))
  t.match(error, { statusCode: 503, attempts: 4, message: 'operation "loop" failed after 4 attempts', headers: { 'retry-after': '5' } })
  t.match((error as Error).cause, { message: 'reset 3' }, 'the cause is the last error')
  t.equal(await metricValue(registry, /^operation_retries_sum\{operation="loop"\}/), 3, 'the retries made are observed')
  t.equal(await metricValue(registry, /^operation_retries_count\{operation="loop"\}/), 1, 'once per call')
})

test('a success on a retry returns its value, and operation_retries observes the retries it took', async (t) => {
  const clock = useFakeClock(t)
  const registry = new Registry()
  const retrier = new Retrier(registry, 'test')
  const outcome = retrier.run(settingsOf({ maxRetries: 3, operation: 'flaky' }), async ({ attempt }) => {
    if (attempt < 2) throw transient()
    return `ok after ${attempt} retries`
  })
  await clock.runAllAsync()
  t.equal(await outcome, 'ok after 2 retries')
  t.equal(await metricValue(registry, /^operation_retries_sum\{operation="flaky"\}/), 2)
  t.equal(await metricValue(registry, /^operation_retries_bucket\{le="1",operation="flaky"\}/), 0)
  t.equal(await metricValue(registry, /^operation_retries_bucket\{le="2",operation="flaky"\}/), 1)
})

test('maxRetries 0 makes one attempt: a retryable failure is exhausted after 1 attempt, another error is thrown unchanged', async (t) => {
  const retrier = new Retrier(new Registry(), 'test')
  const once = settingsOf({ maxRetries: 0 })
  let calls = 0
  const exhausted = await retrier.run(once, () => { calls++; throw transient() }).catch((error: unknown) => error)
  t.match(exhausted, { code: 'FST_RESILIENCE_RETRY_EXHAUSTED', attempts: 1 })
  const notFound = Object.assign(new Error('no such player'), { statusCode: 404 })
  t.equal(await retrier.run(once, () => { calls++; throw notFound }).catch((error: unknown) => error), notFound)
  t.equal(calls, 2)
})

test('an error isRetryable refuses ends the loop at once, thrown unchanged, also after retries', async (t) => {
  const clock = useFakeClock(t)
  const retrier = new Retrier(new Registry(), 'test')
  const notFound = Object.assign(new Error('no such player'), { statusCode: 404 })
  let calls = 0
  const outcome = retrier.run(settingsOf({ maxRetries: 5 }), ({ attempt }) => {
    calls++
    throw attempt === 0 ? transient() : notFound
  }).catch((error: unknown) => error)
  await clock.tickAsync(100)
  t.equal(await within('the loop to end at the refused error', outcome, 2_000), notFound)
  t.equal(calls, 2)
  t.equal(clock.countTimers(), 0, 'no sleep started after it')
})

test('the retry budget refuses a retry before its sleep: the last error is thrown unchanged and retry_budget_exhausted_total counts the call', async (t) => {
  const clock = useFakeClock(t)
  const registry = new Registry()
  const retrier = new Retrier(registry, 'test')
  // No share of the calls and a floor of one retry per 10 s window: the first retry only.
  const budgeted = settingsOf({ maxRetries: 3, operation: 'budgeted', budget: { ratio: 0, minRetriesPerSecond: 0.1, windowMs: 10_000 } })
  const seen: number[] = []
  const outcome = retrier.run(budgeted, ({ attempt }) => {
    seen.push(attempt)
    throw transient(`reset ${attempt}`)
  }).catch((error: unknown) => error)
  await clock.tickAsync(100)
  const error = await within('the budget to refuse the second retry without sleeping', outcome, 2_000)
  t.same(seen, [0, 1], 'one retry, then the budget was spent')
  t.match(error, { message: 'reset 1' })
  t.notOk(isRetryExhaustedError(error), 'not an exhaustion: the error itself')
  t.equal(clock.countTimers(), 0, 'no sleep started for the refused retry')
  t.equal(await metricValue(registry, /^retry_budget_exhausted_total\{operation="budgeted"\}/), 1)
  t.equal(await metricValue(registry, /^operation_retries_sum\{operation="budgeted"\}/), 1)

  let calls = 0
  await retrier.run(budgeted, () => { calls++; throw transient() }).catch(() => {})
  t.equal(calls, 1, 'the next call gets no retry at all')
  t.equal(await metricValue(registry, /^retry_budget_exhausted_total\{operation="budgeted"\}/), 2)
})

test('maxElapsedMs stops the retry whose delay would end past it; a delay ending exactly on it still runs', async (t) => {
  const clock = useFakeClock(t)
  const retrier = new Retrier(new Registry(), 'test')
  // Attempts at 0, 100, 300 and 700 ms; the next would start at 1 500.
  for (const [maxElapsedMs, attempts] of [[700, 4], [699, 3]] as const) {
    const startedAt: number[] = []
    const origin = performance.now()
    const outcome = retrier.run(settingsOf({ maxRetries: 10, maxElapsedMs }), ({ attempt }) => {
      startedAt.push(performance.now() - origin)
      throw transient(`reset ${attempt}`)
    }).catch((error: unknown) => error)
    await clock.tickAsync(700)
    const error = await within(`maxElapsedMs ${maxElapsedMs} to end the retries`, outcome, 2_000)
    t.same(startedAt, [0, 100, 300, 700].slice(0, attempts), `maxElapsedMs ${maxElapsedMs}: ${attempts} attempts`)
    t.match(error, { code: 'FST_RESILIENCE_RETRY_EXHAUSTED', attempts, cause: { message: `reset ${attempts - 1}` } })
    t.equal(clock.countTimers(), 0, 'no sleep started past the deadline')
  }
})

test('maxElapsedMs is measured on the monotonic clock: the time of day jumping an hour ahead does not end the retries', async (t) => {
  const clock = useFakeClock(t)
  const retrier = new Retrier(new Registry(), 'test')
  const outcome = retrier.run(settingsOf({ maxRetries: 3, maxElapsedMs: 1_000 }), ({ attempt }) => {
    if (attempt < 2) throw transient()
    return attempt
  })
  await clock.tickAsync(50)
  clock.setSystemTime(Date.now() + 3_600_000)
  await clock.tickAsync(50 + 200)
  t.equal(await within('the second retry to succeed', outcome, 2_000), 2, 'retried twice: 300 ms of the 1 000 are spent')
})

test('an abort during the sleep rejects at once with its reason, releases the timer and makes no further attempt', async (t) => {
  const clock = useFakeClock(t)
  const registry = new Registry()
  const retrier = new Retrier(registry, 'test')
  const controller = new AbortController()
  let calls = 0
  const outcome = retrier.run(settingsOf({ maxRetries: 3, operation: 'aborted' }), () => { calls++; throw transient() }, controller.signal)
    .catch((error: unknown) => error)
  await clock.tickAsync(50)
  controller.abort(new Error('client went away'))
  t.match(await within('the abort to end the sleep without the clock moving', outcome, 2_000), { message: 'client went away' })
  t.equal(clock.countTimers(), 0, 'the sleep timer was released')
  await clock.tickAsync(10_000)
  t.equal(calls, 1, 'never called again')
  t.equal(await metricValue(registry, /^operation_retries_count\{operation="aborted"\}/), 1, 'the call is observed')
  t.equal(await metricValue(registry, /^operation_retries_sum\{operation="aborted"\}/), 0, 'with no retry made')
})

test('an abort during a retry rejects at once, and the attempt failing afterwards starts no other', async (t) => {
  const clock = useFakeClock(t)
  const retrier = new Retrier(new Registry(), 'test')
  const controller = new AbortController()
  const inFlight = deferred<never>()
  let calls = 0
  const outcome = retrier.run(settings, ({ attempt }) => {
    calls++
    return attempt === 0 ? Promise.reject(transient()) : inFlight.promise
  }, controller.signal).catch((error: unknown) => error)
  await clock.tickAsync(100)
  t.equal(calls, 2, 'the retry is running')
  controller.abort(new Error('client went away'))
  t.match(await within('the abort to end the retry in flight', outcome, 2_000), { message: 'client went away' })
  inFlight.reject(transient())
  await clock.tickAsync(10_000)
  t.equal(calls, 2, 'no attempt after the abort')
})

test('a failure after the signal aborted ends the call as it is: no retry, no exhaustion', async (t) => {
  const retrier = new Retrier(new Registry(), 'test')
  for (const lazy of [false, true]) {
    for (const maxRetries of [0, 2]) {
      const controller = new AbortController()
      let calls = 0
      const error = await retrier.run(settingsOf({ maxRetries }), ({ signal }) => {
        calls++
        // The caller gives up and the attempt fails because of it, as a cancelled query does.
        t.equal(signal, controller.signal)
        controller.abort(new Error('client went away'))
        throw transient('query cancelled')
      }, lazy ? () => controller.signal : controller.signal).catch((e: unknown) => e)
      t.match(error, { message: 'query cancelled' }, `${lazy ? 'a lazy' : 'a given'} signal, maxRetries ${maxRetries}: the failure itself`)
      t.equal(calls, 1)
    }
  }
})

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

test('a first attempt that reads its lazy signal is raced with it: an abort ends the call at once', async (t) => {
  const retrier = new Retrier(new Registry(), 'test')
  const controller = new AbortController()
  const outcome = retrier.run(settings, ({ signal }) => {
    t.equal(signal, controller.signal, 'built by the first attempt')
    return new Promise<never>(() => {})
  }, () => controller.signal).catch((error: unknown) => error)
  controller.abort(new Error('client went away'))
  t.match(await within('the abort to end the first attempt', outcome, 2_000), { message: 'client went away' })
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

test('a lazy signal, once built for a retry, also ends that retry\'s attempt in flight at once', async (t) => {
  const clock = useFakeClock(t)
  const retrier = new Retrier(new Registry(), 'test')
  const controller = new AbortController()
  let calls = 0
  const outcome = retrier.run(settings, ({ attempt }) => {
    calls++
    return attempt === 0 ? Promise.reject(transient()) : new Promise<never>(() => {})
  }, () => controller.signal).catch((error: unknown) => error)
  await clock.tickAsync(100)
  t.equal(calls, 2, 'the retry is running')
  controller.abort(new Error('client went away'))
  t.match(await within('the lazy signal to end the retry in flight', outcome, 2_000), { message: 'client went away' })
})
