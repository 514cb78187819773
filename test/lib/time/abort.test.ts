import { getEventListeners } from 'node:events'
import { test } from 'tap'
import { neverAborted, onAbort, sleep, untilAborted } from '../../../plugins/lib/time/abort.js'
import { useFakeClock } from '../../fixtures/clock.js'

test('sleep waits its time, or rejects at once on abort and releases its timer', async (t) => {
  const clock = useFakeClock(t)
  let done = false
  const waiting = sleep(500, new AbortController().signal).then(() => { done = true })
  await clock.tickAsync(499)
  t.equal(done, false)
  await clock.tickAsync(1)
  await waiting
  t.equal(done, true)

  const controller = new AbortController()
  const aborted = sleep(500, controller.signal)
  controller.abort(new Error('stop'))
  await t.rejects(aborted, /stop/)
  t.equal(clock.countTimers(), 0)
  await t.rejects(sleep(10, AbortSignal.abort(new Error('already'))), /already/)
  await sleep(0, new AbortController().signal)
  t.equal(clock.countTimers(), 0, 'a zero sleep sets no timer')
})

test('untilAborted settles like its promise unless the signal aborts first', async (t) => {
  t.equal(await untilAborted(Promise.resolve('value'), new AbortController().signal), 'value')
  await t.rejects(untilAborted(Promise.reject(new Error('own')), new AbortController().signal), /own/)
  await t.rejects(untilAborted(Promise.reject(new Error('ignored')), AbortSignal.abort(new Error('already aborted'))), /already aborted/)
  const controller = new AbortController()
  const pending = untilAborted(new Promise(() => {}), controller.signal)
  controller.abort(new Error('later'))
  await t.rejects(pending, /later/)
})

test('many waiters on one signal share one listener of the signal, and each is told once', async (t) => {
  const clock = useFakeClock(t)
  const controller = new AbortController()
  const sleeps = Array.from({ length: 50 }, async () => await sleep(1_000, controller.signal).then(() => 'slept', (error: Error) => error.message))
  t.equal(getEventListeners(controller.signal, 'abort').length, 1, 'one listener on the signal for 50 sleeps')
  const told: string[] = []
  const listener = (): void => { told.push('told') }
  const first = onAbort(controller.signal, listener)
  onAbort(controller.signal, listener)
  first()
  controller.abort(new Error('stop'))
  t.same(await Promise.all(sleeps), Array.from({ length: 50 }, () => 'stop'), 'all 50 woke at once')
  t.same(told, ['told'], 'a listener added twice and removed once is told once')
  t.equal(clock.countTimers(), 0, 'their timers were released')
})

test('onAbort never listens to the never-aborting signal', async (t) => {
  const stop = onAbort(neverAborted, () => t.fail('never called'))
  stop()
  t.equal(getEventListeners(neverAborted, 'abort').length, 0)
})
