import { systemClock } from './clock.js'
import type { Clock, ClockTimer } from './clock.js'

/**
 * Many deadlines of one duration on one timer, on a monotonic {@link Clock}. Deadlines of equal length
 * expire in the order they started, so a queue and a single timer armed for
 * the oldest one replace a `setTimeout`/`clearTimeout` pair per call (the
 * per-attempt timeout of a route runs on every request). Cancelling is O(1);
 * cancelled entries are dropped when the timer reaches them. While no
 * deadline is pending the timer does not keep the process alive.
 */
export class Deadlines {
  readonly ms: number
  /** The clock the deadlines are measured on. */
  readonly clock: Clock
  private queue: Deadline[] = []
  private head = 0
  private pending = 0
  private timer: ClockTimer | undefined

  constructor (ms: number, clock: Clock = systemClock) {
    this.ms = ms
    this.clock = clock
  }

  /**
   * Calls `onExpire` once `ms` have passed, unless `cancel()` is called first;
   * never before (a timer that fires early is armed again).
   */
  start (onExpire: () => void): Deadline {
    const deadline = new Deadline(this, this.clock.now() + this.ms, onExpire)
    this.queue.push(deadline)
    this.pending++
    if (this.timer === undefined) this.arm(this.ms)
    else if (this.pending === 1) this.timer.ref()
    return deadline
  }

  /**
   * @internal Called by {@link Deadline.cancel}. Cancelled deadlines at the
   * front are dropped at once: calls mostly end in the order they started, so
   * the queue holds little more than the calls in flight.
   */
  cancelled (): void {
    this.pending--
    const queue = this.queue
    while (this.head < queue.length && !(queue[this.head] as Deadline).pending) this.head++
    if (this.head === queue.length) {
      this.queue = []
      this.head = 0
    } else if (this.head > 1024 && this.head * 2 > queue.length) {
      this.queue = queue.slice(this.head)
      this.head = 0
    }
    if (this.pending === 0) this.timer?.unref()
  }

  /** Only ever called with a deadline pending (the head of the queue). */
  private arm (ms: number): void {
    this.timer = this.clock.setTimeout(() => this.expire(), ms)
  }

  private expire (): void {
    this.timer = undefined
    const now = this.clock.now()
    const queue = this.queue
    while (this.head < queue.length) {
      const deadline = queue[this.head] as Deadline
      if (deadline.pending && deadline.at > now) break
      this.head++
      if (deadline.pending) {
        this.pending--
        deadline.expire()
      }
    }
    if (this.head === queue.length) {
      this.queue = []
      this.head = 0
      return
    }
    this.arm(Math.max(1, (this.queue[this.head] as Deadline).at - now))
  }
}

/** One pending deadline of a {@link Deadlines} queue. */
export class Deadline {
  readonly at: number
  private readonly owner: Deadlines
  private onExpire: (() => void) | undefined

  constructor (owner: Deadlines, at: number, onExpire: () => void) {
    this.owner = owner
    this.at = at
    this.onExpire = onExpire
  }

  /** Neither expired nor cancelled yet. */
  get pending (): boolean {
    return this.onExpire !== undefined
  }

  /** Stops the deadline (no effect once it expired or was cancelled). */
  cancel (): void {
    if (this.onExpire === undefined) return
    this.onExpire = undefined
    this.owner.cancelled()
  }

  /** @internal Called by the queue when the deadline passes. */
  expire (): void {
    const onExpire = this.onExpire as () => void
    this.onExpire = undefined
    try {
      onExpire()
    } catch (error) {
      // The queue must go on; the error surfaces like one thrown in a timer.
      process.nextTick(() => { throw error })
    }
  }
}
