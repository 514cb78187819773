import { test } from 'tap'
import { isTimeoutError } from '../../../plugins/errors.js'
import { Deadlines } from '../../../plugins/lib/time/deadlines.js'
import { callWithTimeout, within } from '../../../plugins/lib/time/timeout.js'
import { deferred, ownClock, useFakeClock } from '../../fixtures/clock.js'

test('without timeoutMs the function gets the caller\'s own signal', async (t) => {
  const caller = new AbortController()
  const seen = await callWithTimeout(({ signal }) => signal, caller.signal, undefined)
  t.equal(seen, caller.signal)
})

test('a caller that aborts mid-call aborts the function\'s signal with the caller\'s reason', async (t) => {
  const caller = new AbortController()
  let seen: AbortSignal | undefined
  const call = callWithTimeout(async ({ signal }) => {
    seen = signal
    return await new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
  }, caller.signal, new Deadlines(60_000))
  caller.abort(new Error('client went away'))
  await t.rejects(call, /client went away/)
  t.equal(seen?.aborted, true)
})

test('an already aborted caller signal arrives aborted', async (t) => {
  const caller = new AbortController()
  caller.abort(new Error('too late'))
  const seen = await callWithTimeout(({ signal }) => signal, caller.signal, new Deadlines(60_000))
  t.equal(seen.aborted, true)
  t.match(seen.reason, /too late/)
})

test('the timeout rejects without waiting for a function that ignores its signal, and clears its timer on success', async (t) => {
  const clock = ownClock()
  const deadlines = new Deadlines(250, clock)
  const outcome = callWithTimeout(async () => await new Promise(() => {}), new AbortController().signal, deadlines).catch((e: unknown) => e)
  await clock.tickAsync(250)
  t.ok(isTimeoutError(await outcome))
  let quickSignal: AbortSignal | undefined
  t.equal(await callWithTimeout(async ({ signal }) => { quickSignal = signal; return 'quick' }, new AbortController().signal, deadlines), 'quick')
  await clock.tickAsync(1_000)
  t.equal(quickSignal?.aborted, false, 'the deadline of a call that succeeded was cancelled')

  const thrown = new Error('thrown at once')
  await t.rejects(callWithTimeout(() => { throw thrown }, new AbortController().signal, deadlines), thrown, 'a synchronous throw rejects')
  await t.rejects(callWithTimeout(() => { throw thrown }, new AbortController().signal, undefined), thrown, 'without a deadline too')
})

test('a signal first asked for after the deadline passed is born aborted, with the timeout as reason', async (t) => {
  const clock = ownClock()
  const late = deferred()
  let seen: AbortSignal | undefined
  const call = callWithTimeout(async (context) => {
    await late.promise
    seen = context.signal
    return 'late'
  }, new AbortController().signal, new Deadlines(100, clock)).catch((e: unknown) => e)
  await clock.tickAsync(100)
  t.ok(isTimeoutError(await call))
  late.resolve()
  await clock.tickAsync(0)
  t.equal(seen?.aborted, true)
  t.ok(isTimeoutError(seen?.reason))
})

test('onExpire may settle a call at its deadline instead of rejecting it (a handler that already replied)', async (t) => {
  const clock = ownClock()
  const deadlines = new Deadlines(100, clock)
  let signal: AbortSignal | undefined
  const settled = callWithTimeout(async (context) => { signal = context.signal; return await new Promise<string>(() => {}) }, new AbortController().signal, deadlines, (error) => {
    t.ok(isTimeoutError(error), 'onExpire hears the timeout')
    return { settled: 'replied' }
  })
  await clock.tickAsync(100)
  t.equal(await settled, 'replied')
  t.equal(signal?.aborted, false, 'a call settled by onExpire is not aborted')

  const rejected = callWithTimeout(async () => await new Promise<string>(() => {}), new AbortController().signal, deadlines, () => undefined).catch((e: unknown) => e)
  await clock.tickAsync(100)
  t.ok(isTimeoutError(await rejected), 'onExpire answering undefined leaves the timeout error')
})

test('within() rejects at its deadline and never before, even when the timer fires early', async (t) => {
  const clock = ownClock()
  // A timer that fires 5 ms before it is due, as a coarse timer may.
  const early = { ...clock, setTimeout: (callback: () => void, ms: number) => clock.setTimeout(callback, Math.max(0, ms - 5)) }
  const deadlines = new Deadlines(50, early)
  let outcome: unknown
  within(new Promise(() => {}), deadlines).catch((e: unknown) => { outcome = e })
  await clock.tickAsync(49)
  t.equal(outcome, undefined, 'not given up at 49 ms although the timer fired at 45 ms')
  await clock.tickAsync(1)
  t.ok(isTimeoutError(outcome), 'given up at 50 ms')
  t.equal(await within(Promise.resolve('answer'), deadlines), 'answer', 'an answer in time passes through')
})

test('waits run on the monotonic clock: a stopped time of day does not stretch them', async (t) => {
  useFakeClock(t, ['Date'])
  const outcome = await within(new Promise(() => {}), new Deadlines(20)).catch((e: unknown) => e)
  t.ok(isTimeoutError(outcome), 'gave up while Date stood still')
})
