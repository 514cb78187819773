/** Settings of a retry budget. */
export interface RetryBudgetSettings {
  /** Share of recent calls that may be retried (0 to 1). */
  ratio: number
  /** Retries always allowed per second, whatever the number of calls. */
  minRetriesPerSecond: number
  /** How far back "recent" reaches. */
  windowMs: number
}

const BUCKETS = 10

/**
 * A retry budget as in Envoy, Finagle and gRPC retry throttling: retries are
 * allowed while, over the last `windowMs`, retries stay under
 * `ratio × calls + minRetriesPerSecond × windowMs / 1000`. When a dependency
 * is down, every caller keeps retrying only a small share of its traffic
 * instead of multiplying its load by (1 + maxRetries).
 *
 * Counts live in ten time buckets, so each check adds up ten numbers.
 */
export class RetryBudget {
  readonly settings: RetryBudgetSettings
  private readonly bucketMs: number
  private readonly floor: number
  private readonly bucketIds = new Array<number>(BUCKETS).fill(-1)
  private readonly calls = new Array<number>(BUCKETS).fill(0)
  private readonly retries = new Array<number>(BUCKETS).fill(0)

  constructor (settings: RetryBudgetSettings) {
    this.settings = settings
    this.bucketMs = settings.windowMs / BUCKETS
    this.floor = settings.minRetriesPerSecond * settings.windowMs / 1000
  }

  /** Counts a first attempt (a call). */
  recordCall (): void {
    this.calls[this.currentBucket()]++
  }

  /** Takes one retry from the budget; false when it is spent. */
  tryRetry (): boolean {
    const current = this.currentBucket()
    let calls = 0
    let retries = 0
    for (let i = 0; i < BUCKETS; i++) {
      if (this.bucketIds[i] > (this.bucketIds[current] as number) - BUCKETS) {
        calls += this.calls[i] as number
        retries += this.retries[i] as number
      }
    }
    if (retries + 1 > this.settings.ratio * calls + this.floor) return false
    this.retries[current]++
    return true
  }

  private currentBucket (): number {
    const id = Math.floor(Date.now() / this.bucketMs)
    const index = id % BUCKETS
    if (this.bucketIds[index] !== id) {
      this.bucketIds[index] = id
      this.calls[index] = 0
      this.retries[index] = 0
    }
    return index
  }
}
