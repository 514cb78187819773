import { test } from 'tap'
import { isTimeoutError } from '../../../plugins/errors.js'
import { Deadlines } from '../../../plugins/lib/time/deadlines.js'
import { callWithTimeout } from '../../../plugins/lib/time/timeout.js'
import { deferred, useFakeClock } from '../../fixtures/clock.js'

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
  const clock = useFakeClock(t)
  const deadlines = new Deadlines(250)
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
  const clock = useFakeClock(t)
  const late = deferred()
  let seen: AbortSignal | undefined
  const call = callWithTimeout(async (context) => {
    await late.promise
    seen = context.signal
    return 'late'
  }, new AbortController().signal, new Deadlines(100)).catch((e: unknown) => e)
  await clock.tickAsync(100)
  t.ok(isTimeoutError(await call))
  late.resolve()
  await clock.tickAsync(0)
  t.equal(seen?.aborted, true)
  t.ok(isTimeoutError(seen?.reason))
})
