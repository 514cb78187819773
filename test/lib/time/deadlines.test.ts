import { once } from 'node:events'
import { test } from 'tap'
import { Deadlines } from '../../../plugins/lib/time/deadlines.js'
import { ownClock } from '../../fixtures/clock.js'

test('deadlines expire in order, each after its own full duration, on one timer', async (t) => {
  const clock = ownClock()
  const deadlines = new Deadlines(100, clock)
  const expired: string[] = []
  deadlines.start(() => expired.push('a'))
  await clock.tickAsync(40)
  deadlines.start(() => expired.push('b'))
  t.equal(clock.countTimers(), 1, 'one timer for both')
  await clock.tickAsync(59)
  t.same(expired, [], 'nothing before 100 ms')
  await clock.tickAsync(1)
  t.same(expired, ['a'], 'a at 100 ms')
  await clock.tickAsync(39)
  t.same(expired, ['a'], 'b not before its own 100 ms')
  await clock.tickAsync(1)
  t.same(expired, ['a', 'b'], 'b at 140 ms')
  t.equal(clock.countTimers(), 0, 'no timer left once the queue is empty')
})

test('a cancelled deadline never fires, and cancelling twice or after expiry changes nothing', async (t) => {
  const clock = ownClock()
  const deadlines = new Deadlines(50, clock)
  const expired: string[] = []
  const a = deadlines.start(() => expired.push('a'))
  const b = deadlines.start(() => expired.push('b'))
  a.cancel()
  a.cancel()
  t.equal(a.pending, false)
  t.equal(b.pending, true)
  await clock.tickAsync(50)
  t.same(expired, ['b'])
  b.cancel()
  t.equal(b.pending, false)
  deadlines.start(() => expired.push('c'))
  await clock.tickAsync(50)
  t.same(expired, ['b', 'c'], 'the count of pending deadlines stayed right')
})

test('the timer keeps the process alive only while a deadline is pending', async (t) => {
  const clock = ownClock()
  const deadlines = new Deadlines(1000, clock)
  const timerOf = (): { hasRef: () => boolean } => (deadlines as unknown as { timer: { hasRef: () => boolean } }).timer
  const first = deadlines.start(() => {})
  t.equal(timerOf().hasRef(), true)
  first.cancel()
  t.equal(timerOf().hasRef(), false, 'idle: unref')
  const second = deadlines.start(() => {})
  t.equal(timerOf().hasRef(), true, 'pending again: ref')
  second.cancel()
})

test('thousands of deadlines: cancelled ones are dropped and the rest still expire in order', async (t) => {
  const clock = ownClock()
  const deadlines = new Deadlines(10, clock)
  const expired: number[] = []
  for (let i = 0; i < 3000; i++) {
    const deadline = deadlines.start(() => expired.push(i))
    if (i < 2000) deadline.cancel()
    if (i === 2000) await clock.tickAsync(1)
  }
  await clock.tickAsync(9)
  t.equal(expired.length, 1)
  t.equal(expired[0], 2000, 'only the one started before the tick was due')
  await clock.tickAsync(1)
  t.equal(expired.length, 1000)
  t.same(expired.slice(0, 3), [2000, 2001, 2002])
})

test('a callback that throws does not stop the queue; the error surfaces like a timer error', async (t) => {
  const clock = ownClock()
  const deadlines = new Deadlines(10, clock)
  const expired: string[] = []
  const listeners = process.listeners('uncaughtException')
  process.removeAllListeners('uncaughtException')
  t.teardown(() => { for (const listener of listeners) process.on('uncaughtException', listener) })
  const uncaught = once(process, 'uncaughtException')
  deadlines.start(() => { throw new Error('boom') })
  deadlines.start(() => expired.push('after'))
  await clock.tickAsync(10)
  t.same(expired, ['after'])
  const [error] = await uncaught
  t.match(error, /boom/)
})

test('a long-lived deadline at the front does not make the queue keep every cancelled one behind it', async (t) => {
  const clock = ownClock()
  const deadlines = new Deadlines(100, clock)
  const expired: number[] = []
  const started = Array.from({ length: 2000 }, (_, i) => deadlines.start(() => expired.push(i)))
  for (const deadline of started.slice(1, 1500)) deadline.cancel()
  const queueLength = (): number => (deadlines as unknown as { queue: unknown[] }).queue.length
  t.equal(queueLength(), 2000, 'kept while the oldest is pending')
  started[0]?.cancel()
  t.equal(queueLength(), 500, 'the cancelled front is dropped at once')
  await clock.tickAsync(100)
  t.equal(expired.length, 500)
  t.same([expired[0], expired.at(-1)], [1500, 1999])
})
