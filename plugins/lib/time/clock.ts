import { performance } from 'node:perf_hooks'

/** A timer of a {@link Clock}: it may be told not to keep the process alive. */
export interface ClockTimer {
  ref: () => unknown
  unref: () => unknown
}

/**
 * The clock every wait of the suite is measured on: milliseconds that only
 * move forward (never set back or stopped with the time of day), and the
 * timers that fire on them. Code takes one as a parameter, defaulting to
 * {@link systemClock}; unit tests pass a fake one.
 */
export interface Clock {
  /** Milliseconds since an arbitrary origin; only ever increases. */
  now: () => number
  setTimeout: (callback: () => void, ms: number) => ClockTimer
  clearTimeout: (timer: ClockTimer) => void
}

/**
 * `performance.now()` and Node's timers, each looked up when called, so a
 * test that fakes them globally (`performance` with the timers) fakes this
 * clock too.
 */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (timer) => clearTimeout(timer as NodeJS.Timeout)
}
