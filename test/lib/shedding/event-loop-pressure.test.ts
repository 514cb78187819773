import FakeTimers from '@sinonjs/fake-timers'
import type { EventLoopUtilization } from 'node:perf_hooks'
import { test } from 'tap'
import { EventLoopPressure } from '../../../plugins/lib/shedding/event-loop-pressure.js'
import type { EventLoopLimits, UtilizationReader } from '../../../plugins/lib/shedding/event-loop-pressure.js'
import type { Clock, ClockTimer } from '../../../plugins/lib/time/clock.js'
import { useFakeClock } from '../../fixtures/clock.js'

interface Teardown { teardown: (fn: () => void) => void }

/**
 * A clock of its own (starting at 0, moving only when told) on which the
 * event loop can be blocked: `block(ms)` moves time on at once, so a timer
 * due meanwhile fires late, when the block ends, as after a busy loop.
 */
function blockableClock (): { clock: Clock, tick: (ms: number) => void, block: (ms: number) => void } {
  const fake = FakeTimers.createClock(0)
  const clock: Clock = {
    now: () => fake.now,
    setTimeout: (callback, ms) => fake.setTimeout(callback, ms) as unknown as ClockTimer,
    clearTimeout: (timer) => { fake.clearTimeout(timer as unknown as FakeTimers.TimerId) }
  }
  return { clock, tick: (ms) => { fake.tick(ms) }, block: (ms) => { fake.jump(ms) } }
}

/**
 * An event loop whose busy and idle time the test sets, read as
 * `performance.eventLoopUtilization` reads Node's: cumulative readings, and
 * the share of busy time between two of them.
 */
function fakeLoop (): { read: UtilizationReader, run: (busyMs: number, idleMs: number) => void, readings: () => number } {
  let active = 0
  let idle = 0
  let readings = 0
  const read: UtilizationReader = (current?: EventLoopUtilization, previous?: EventLoopUtilization) => {
    readings++
    if (current === undefined || previous === undefined) return { active, idle, utilization: active / Math.max(1, active + idle) }
    const busy = current.active - previous.active
    const rest = current.idle - previous.idle
    return { active: busy, idle: rest, utilization: busy / (busy + rest) }
  }
  return { read, run: (busyMs, idleMs) => { active += busyMs; idle += idleMs }, readings: () => readings }
}

function start (t: Teardown, limits: Partial<EventLoopLimits>, clock: Clock, loop = fakeLoop()): EventLoopPressure {
  const pressure = new EventLoopPressure({ maxDelayMs: undefined, maxUtilization: undefined, sampleIntervalMs: 1000, ...limits }, clock, loop.read)
  t.teardown(() => pressure.stop())
  return pressure
}

test('a sample that fires more than maxDelayMs late is event_loop_delay pressure, until a sample fires on time', async (t) => {
  const { clock, tick, block } = blockableClock()
  const pressure = start(t, { maxDelayMs: 100 }, clock)
  t.equal(pressure.pressure, undefined, 'nothing before the first sample')
  tick(1000)
  t.equal(pressure.pressure, undefined, 'on time')
  block(1200)
  t.equal(clock.now(), 2200)
  t.equal(pressure.pressure, 'event_loop_delay', 'the sample due at 2000 fired 200 ms late')
  tick(999)
  t.equal(pressure.pressure, 'event_loop_delay', 'held until the next sample')
  tick(1)
  t.equal(pressure.pressure, undefined, 'the next sample, due one interval after the late one, is on time')
  block(1100)
  t.equal(pressure.pressure, undefined, 'exactly maxDelayMs late is not pressure')
  block(1101)
  t.equal(pressure.pressure, 'event_loop_delay', '101 ms late is')
})

test('an interval busy for more than maxUtilization of its time is event_loop_utilization pressure; the delay is judged first', async (t) => {
  const { clock, tick, block } = blockableClock()
  const loop = fakeLoop()
  const pressure = start(t, { maxDelayMs: 100, maxUtilization: 0.5 }, clock, loop)
  loop.run(600, 400)
  tick(1000)
  t.equal(pressure.pressure, 'event_loop_utilization', '60 % busy')
  loop.run(500, 500)
  tick(1000)
  t.equal(pressure.pressure, undefined, '50 % busy is not above 0.5')
  loop.run(200, 800)
  block(1500)
  t.equal(pressure.pressure, 'event_loop_delay', 'late: the delay, whatever the utilization')
  loop.run(900, 100)
  block(1500)
  t.equal(pressure.pressure, 'event_loop_delay', 'late and busy: the delay is named')
  loop.run(10, 990)
  tick(1000)
  t.equal(pressure.pressure, undefined, 'the utilization is of the last interval only, not since the start')
})

test('a limit left out is not watched', async (t) => {
  const { clock, tick, block } = blockableClock()
  const loop = fakeLoop()
  const utilizationOnly = start(t, { maxUtilization: 0.5 }, clock, loop)
  const delayOnly = start(t, { maxDelayMs: 100 }, clock, loop)
  loop.run(1, 99)
  block(5000)
  t.equal(utilizationOnly.pressure, undefined, 'a 4 s late sample, but the delay is not watched')
  t.equal(delayOnly.pressure, 'event_loop_delay')
  loop.run(99, 1)
  tick(1000)
  t.equal(utilizationOnly.pressure, 'event_loop_utilization')
  t.equal(delayOnly.pressure, undefined, '99 % busy, but the utilization is not watched')
})

test('it samples every sampleIntervalMs on one timer that keeps no process alive, and stop() ends the sampling', async (t) => {
  const fake = FakeTimers.createClock(0)
  const timers: Array<{ hasRef: () => boolean }> = []
  const clock: Clock = {
    now: () => fake.now,
    setTimeout: (callback, ms) => {
      const timer = fake.setTimeout(callback, ms) as unknown as ClockTimer & { hasRef: () => boolean }
      timers.push(timer)
      return timer
    },
    clearTimeout: (timer) => { fake.clearTimeout(timer as unknown as FakeTimers.TimerId) }
  }
  const loop = fakeLoop()
  const pressure = start(t, { maxUtilization: 0.5, sampleIntervalMs: 250 }, clock, loop)
  t.equal(loop.readings(), 1, 'the first reading, at start')
  fake.tick(249)
  t.equal(loop.readings(), 1, 'no sample before 250 ms')
  fake.tick(1)
  t.equal(loop.readings(), 3, 'a sample at 250 ms: a reading and the difference with the last one')
  fake.tick(750)
  t.equal(loop.readings(), 9, 'three more samples by 1000 ms')
  t.equal(fake.countTimers(), 1, 'one pending timer at a time')
  t.ok(timers.length > 0 && timers.every((timer) => !timer.hasRef()), 'every timer unref\'d')
  loop.run(100, 0)
  pressure.stop()
  t.equal(fake.countTimers(), 0, 'no timer left after stop()')
  fake.tick(10_000)
  t.equal(loop.readings(), 9, 'no sample after stop()')
  t.equal(pressure.pressure, undefined, 'the last value stays')
})

test('by default it reads the suite\'s clock (performance.now and its timers) and Node\'s event-loop utilization', async (t) => {
  const clock = useFakeClock(t)
  const pressure = new EventLoopPressure({ maxDelayMs: 100, maxUtilization: 0.5, sampleIntervalMs: 1000 })
  t.teardown(() => pressure.stop())
  clock.jump(1200)
  t.equal(pressure.pressure, 'event_loop_delay', 'the faked performance.now says the sample fired 200 ms late')
  // Nothing here yields to the loop, so Node counts the whole interval as busy.
  const spinUntil = process.hrtime.bigint() + 5_000_000n
  while (process.hrtime.bigint() < spinUntil) { /* busy */ }
  clock.tick(1000)
  t.equal(pressure.pressure, 'event_loop_utilization', 'on time, but the loop never went idle')
})
