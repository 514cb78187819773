import { CircuitState } from 'cockatiel'
import type { IBreaker } from 'cockatiel'

/**
 * A cockatiel `IBreaker` with gobreaker's closed-state rule: counts live in a
 * fixed window of `windowMs` that starts with the first call after the last
 * window expired (gobreaker's `Interval`, which clears its counts each
 * generation); the circuit opens on a failure when the window holds at least
 * `minimumCalls` calls of which at least `failureRatio` failed. Cockatiel's own
 * breakers do not do this: `SamplingBreaker` needs a rate of calls per second
 * and `CountBreaker` has no time window.
 */
export class WindowRatioBreaker implements IBreaker {
  private readonly failureRatio: number
  private readonly minimumCalls: number
  private readonly windowMs: number
  private windowEndsAt = 0
  private calls = 0
  private failures = 0

  constructor (failureRatio: number, minimumCalls: number, windowMs: number) {
    this.failureRatio = failureRatio
    this.minimumCalls = minimumCalls
    this.windowMs = windowMs
  }

  /** Counts of the current window (for snapshots, and cockatiel's `toJSON`). */
  get state (): { calls: number, failures: number, windowEndsAt: number } {
    this.expireWindow()
    return { calls: this.calls, failures: this.failures, windowEndsAt: this.windowEndsAt }
  }

  success (state: CircuitState): void {
    if (state === CircuitState.HalfOpen) {
      // The half-open trials succeeded: the circuit closes with fresh counts.
      this.reset()
      return
    }
    this.record(false)
  }

  failure (state: CircuitState): boolean {
    if (state === CircuitState.HalfOpen) {
      // Cockatiel re-opens the circuit itself; start the next closed period clean.
      this.reset()
      return true
    }
    this.record(true)
    if (this.calls >= this.minimumCalls && this.failures / this.calls >= this.failureRatio) {
      this.reset()
      return true
    }
    return false
  }

  private record (failed: boolean): void {
    this.expireWindow()
    if (this.calls === 0) this.windowEndsAt = Date.now() + this.windowMs
    this.calls++
    if (failed) this.failures++
  }

  private expireWindow (): void {
    if (this.calls > 0 && Date.now() >= this.windowEndsAt) this.reset()
  }

  private reset (): void {
    this.calls = 0
    this.failures = 0
    this.windowEndsAt = 0
  }
}
