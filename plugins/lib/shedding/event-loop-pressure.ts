import { performance } from 'node:perf_hooks'
import type { EventLoopUtilization } from 'node:perf_hooks'
import { systemClock } from '../time/clock.js'
import type { Clock, ClockTimer } from '../time/clock.js'

/** The process-pressure reasons to refuse non-critical requests. */
export type EventLoopPressureReason = 'event_loop_delay' | 'event_loop_utilization'

/** What the sampler watches; at least one of the two limits is set. */
export interface EventLoopLimits {
  /** Pressure while a sample comes more than this late (ms); undefined: not watched. */
  maxDelayMs: number | undefined
  /** Pressure while the loop was busy for more than this share (0 to 1) of an interval; undefined: not watched. */
  maxUtilization: number | undefined
  /** Time between samples, in milliseconds. */
  sampleIntervalMs: number
}

/** `performance.eventLoopUtilization`: a reading since start, or the difference of two readings. */
export type UtilizationReader = (current?: EventLoopUtilization, previous?: EventLoopUtilization) => EventLoopUtilization

/**
 * The event loop's pressure, sampled every `sampleIntervalMs` on an unref'd
 * timer so that a request only reads {@link EventLoopPressure.pressure}.
 *
 * The delay is how late the sampling timer itself fires: a loop blocked when
 * the sample is due delays it by as long as it stays blocked. The utilization
 * is the share of the interval the loop spent working, from
 * `performance.eventLoopUtilization`. The delay is judged first.
 */
export class EventLoopPressure {
  /** Why non-critical requests are refused now, if they are; moves only when a sample is taken. */
  pressure: EventLoopPressureReason | undefined
  private readonly limits: EventLoopLimits
  private readonly clock: Clock
  private readonly readUtilization: UtilizationReader
  private lastSampleMs: number
  private lastUtilization: EventLoopUtilization
  private timer!: ClockTimer

  /** Starts sampling at once; {@link EventLoopPressure.stop} ends it. */
  constructor (limits: EventLoopLimits, clock: Clock = systemClock, readUtilization: UtilizationReader = (current, previous) => performance.eventLoopUtilization(current, previous)) {
    this.limits = limits
    this.clock = clock
    this.readUtilization = readUtilization
    this.lastSampleMs = clock.now()
    this.lastUtilization = readUtilization()
    this.schedule()
  }

  /** Stops sampling; {@link EventLoopPressure.pressure} keeps its last value. */
  stop (): void {
    this.clock.clearTimeout(this.timer)
  }

  private schedule (): void {
    this.timer = this.clock.setTimeout(() => this.sample(), this.limits.sampleIntervalMs)
    // Sampling must not keep a process alive that has nothing else to do.
    this.timer.unref()
  }

  private sample (): void {
    // Scheduled before measuring, as setInterval would, so the next sample is due one interval after this one fired.
    this.schedule()
    const nowMs = this.clock.now()
    const delayMs = nowMs - this.lastSampleMs - this.limits.sampleIntervalMs
    this.lastSampleMs = nowMs
    const reading = this.readUtilization()
    const utilization = this.readUtilization(reading, this.lastUtilization).utilization
    this.lastUtilization = reading
    const { maxDelayMs, maxUtilization } = this.limits
    if (maxDelayMs !== undefined && delayMs > maxDelayMs) this.pressure = 'event_loop_delay'
    else if (maxUtilization !== undefined && utilization > maxUtilization) this.pressure = 'event_loop_utilization'
    else this.pressure = undefined
  }
}
