/** A move of the limit worth reporting: from where to where, and how long it took. */
export interface LimitMove { from: number, to: number, withinMs: number }

/**
 * Notices when the adaptive limit halves or doubles within `periodMs`, so
 * operators see it move, at most once per `periodMs` (a flapping limit must
 * not flood the log). Measured from the limit at the start of the period.
 */
export class LimitMoves {
  private readonly periodMs: number
  private readonly now: () => number
  private from: number
  private last: number
  private sinceMs: number
  private loggedMs = -Infinity

  /**
   * @param limit - the limit moves are measured from at first
   * @param now - milliseconds on a monotonic clock (`systemClock.now`)
   */
  constructor (limit: number, periodMs: number, now: () => number) {
    this.periodMs = periodMs
    this.now = now
    this.from = limit
    this.last = limit
    this.sinceMs = now()
  }

  /** The new limit; returns the move to log, if any. */
  observe (limit: number): LimitMove | undefined {
    const nowMs = this.now()
    if (nowMs - this.sinceMs > this.periodMs) {
      this.from = this.last
      this.sinceMs = nowMs
    }
    this.last = limit
    if ((limit * 2 > this.from && limit < this.from * 2) || nowMs - this.loggedMs < this.periodMs) return undefined
    const move = { from: this.from, to: limit, withinMs: nowMs - this.sinceMs }
    this.loggedMs = nowMs
    this.from = limit
    this.sinceMs = nowMs
    return move
  }
}
