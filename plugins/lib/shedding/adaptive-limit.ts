/** Settings of the adaptive limit; every one has a default. */
export interface AdaptiveLimitOptions {
  /**
   * The limit never goes below this.
   * @default 5
   */
  minLimit?: number
  /**
   * The limit never goes above this (and never above `maxConcurrent`).
   * @default maxConcurrent
   */
  maxLimit?: number
  /**
   * The limit before anything was measured.
   * @default 20
   */
  initialLimit?: number
  /**
   * Shortest sample window, in milliseconds: how often the limit can move.
   * @default 100
   */
  windowMs?: number
  /**
   * Fewest successful requests in a sample window.
   * @default 10
   */
  minSamples?: number
  /**
   * How many times the baseline RTT a window's RTT may reach before the limit
   * shrinks (>= 1): 1.5 lets latency grow by half under load.
   * @default 1.5
   */
  rttTolerance?: number
  /**
   * Share of the gradient's cut applied per window (0 to 1], so one slow
   * window does not halve the limit.
   * @default 0.2
   */
  smoothing?: number
  /**
   * How often one window runs at `minLimit` to measure the unqueued RTT again,
   * in milliseconds (plus up to 15 % jitter).
   * @default 30000
   */
  probeIntervalMs?: number
}

/** The adaptive limit's settings with every default filled in. */
export type AdaptiveLimitSettings = Required<AdaptiveLimitOptions>

/** The defaults of {@link AdaptiveLimitOptions}; `maxLimit`'s is the plugin's `maxConcurrent`. */
export const ADAPTIVE_DEFAULTS: Omit<AdaptiveLimitSettings, 'maxLimit'> = {
  minLimit: 5,
  initialLimit: 20,
  windowMs: 100,
  minSamples: 10,
  rttTolerance: 1.5,
  smoothing: 0.2,
  probeIntervalMs: 30_000
}

/** Windows in a row at `minLimit` after which the window's RTT becomes the baseline (Envoy's rule). */
export const WINDOWS_AT_FLOOR_BEFORE_REBASELINE = 5
/** Up to this share of `probeIntervalMs` is added at random, so that a fleet started together does not probe together. */
const PROBE_JITTER = 0.15
/**
 * A limit shrunk to this share of where the shrinking started, with the RTT
 * still above {@link STALE_RTT_SHARE} of what it was then, means the service
 * got slower, not more queued (queueing answers a smaller limit with a lower
 * RTT): the baseline is measured again at once.
 */
const STALE_LIMIT_SHARE = 0.75
/** See {@link STALE_LIMIT_SHARE}. */
const STALE_RTT_SHARE = 0.9
/**
 * Windows after a re-measurement forced by a stale baseline before another
 * may be forced: near capacity, queueing alone can look stale for a while,
 * and each re-measurement refuses what is above `minLimit` for a window.
 */
const STALE_PROBE_SPACING_WINDOWS = 50
/** Below half the limit, it eases back towards this many times the requests in flight. */
const APP_LIMITED_HEADROOM = 4

/**
 * A concurrency limit learnt from the latency of successful requests (the
 * load shedding plugin's `limit: 'adaptive'`): a gradient on round-trip
 * times, after Netflix concurrency-limits' Gradient2Limit and Envoy's
 * adaptive concurrency filter. Each sample window's average RTT is compared
 * with a baseline, the RTT without queueing measured at `minLimit`: the limit
 * shrinks while requests queue and grows by `sqrt(limit)` while they do not.
 * docs/load-shedding.md ("How the limit moves") tells every rule and why.
 *
 * Pure and clock-injected: no timers, the limit moves only when
 * {@link AdaptiveLimit.record} closes a sample window. It starts at
 * `minLimit`, measuring its first baseline.
 *
 * @example
 * ```ts
 * const adaptive = new AdaptiveLimit(settings, systemClock.now)
 * const admittedAtMs = systemClock.now() // as a request is admitted, with inFlight requests in flight
 * if (adaptive.record(admittedAtMs, inFlight, ok)) limit = adaptive.limit // as its response ends
 * ```
 */
export class AdaptiveLimit {
  /** The current limit, a whole number from `minLimit` to `maxLimit`. */
  limit: number
  /** The RTT taken as unqueued (ms), once a window was measured. */
  baselineRttMs: number | undefined
  private estimate: number
  private readonly settings: AdaptiveLimitSettings
  private readonly now: () => number
  private readonly random: () => number
  private windowStartMs: number
  private windowCount = 0
  private windowSumMs = 0
  private windowMostInFlight = 0
  private windowsAtFloor = 0
  /** While the limit shrinks: the limit and window RTT the shrinking is judged against. */
  private anchor: { limit: number, rttMs: number } | undefined
  /** No re-measurement is forced by a stale baseline before this time. */
  private staleProbeNotBeforeMs = 0
  /** While measuring the baseline: requests admitted before this time are not samples. */
  private probeStartMs: number | undefined
  private nextProbeMs = 0

  /**
   * @param now - milliseconds on a monotonic clock (`systemClock.now`)
   * @param random - from 0 to 1, for the probes' jitter
   */
  constructor (settings: AdaptiveLimitSettings, now: () => number, random: () => number = Math.random) {
    this.settings = settings
    this.now = now
    this.random = random
    this.estimate = Math.min(settings.maxLimit, Math.max(settings.minLimit, settings.initialLimit))
    this.windowStartMs = now()
    this.limit = settings.minLimit
    this.probeStartMs = this.windowStartMs
  }

  /** True while a window runs at `minLimit` to measure the baseline. */
  get probing (): boolean {
    return this.probeStartMs !== undefined
  }

  /**
   * A request admitted at `startedAtMs`, with `inFlight` requests in flight
   * then (itself included), has finished; `ok` is false when it failed or was
   * cut short. Returns true when this closed a window and the limit moved.
   */
  record (startedAtMs: number, inFlight: number, ok: boolean): boolean {
    if (!ok || (this.probeStartMs !== undefined && startedAtMs < this.probeStartMs)) return false
    const nowMs = this.now()
    this.windowCount++
    this.windowSumMs += nowMs - startedAtMs
    if (inFlight > this.windowMostInFlight) this.windowMostInFlight = inFlight
    if (nowMs - this.windowStartMs < this.settings.windowMs || this.windowCount < this.settings.minSamples) return false
    const windowRttMs = this.windowSumMs / this.windowCount
    const mostInFlight = this.windowMostInFlight
    this.windowStartMs = nowMs
    this.windowCount = 0
    this.windowSumMs = 0
    this.windowMostInFlight = 0
    const before = this.limit
    this.update(windowRttMs, mostInFlight, nowMs)
    return this.limit !== before
  }

  /**
   * Moves the limit by the gradient (the service uses at least half of it);
   * true when the baseline looks stale (see {@link STALE_LIMIT_SHARE}): then
   * it is measured again now, not at the next probe nor once the limit sits
   * on its floor.
   */
  private follow (windowRttMs: number): boolean {
    const { minLimit, maxLimit, rttTolerance, smoothing } = this.settings
    // A zero RTT (a coarse clock) means no queueing at all.
    const gradient = windowRttMs === 0 ? 1 : Math.max(0.5, Math.min(1, rttTolerance * (this.baselineRttMs as number) / windowRttMs))
    let estimate = this.estimate
    if (gradient < 1) estimate *= 1 - smoothing * (1 - gradient)
    else estimate += Math.sqrt(estimate)
    this.estimate = Math.min(maxLimit, Math.max(minLimit, estimate))
    this.limit = Math.floor(this.estimate)
    this.windowsAtFloor = this.limit <= minLimit ? this.windowsAtFloor + 1 : 0
    if (gradient >= 1) {
      this.anchor = undefined
    } else if (this.anchor === undefined || windowRttMs < STALE_RTT_SHARE * this.anchor.rttMs) {
      this.anchor = { limit: estimate, rttMs: windowRttMs }
    } else if (estimate <= STALE_LIMIT_SHARE * this.anchor.limit) {
      return true
    }
    return false
  }

  /** Below half the limit: eases a limit far above the traffic back towards it, by `smoothing` per window. */
  private ease (mostInFlight: number): void {
    const floor = Math.max(this.settings.minLimit, this.settings.initialLimit, APP_LIMITED_HEADROOM * mostInFlight)
    if (this.estimate <= floor) return
    this.estimate -= this.settings.smoothing * (this.estimate - floor)
    this.limit = Math.floor(this.estimate)
  }

  private update (windowRttMs: number, mostInFlight: number, nowMs: number): void {
    const { minLimit, probeIntervalMs } = this.settings
    if (this.probeStartMs !== undefined) {
      this.baselineRttMs = windowRttMs
      this.probeStartMs = undefined
      this.nextProbeMs = nowMs + probeIntervalMs * (1 + PROBE_JITTER * this.random())
      this.limit = Math.floor(this.estimate)
      return
    }
    const baselineRttMs = this.baselineRttMs as number
    if (windowRttMs < baselineRttMs || this.windowsAtFloor >= WINDOWS_AT_FLOOR_BEFORE_REBASELINE) {
      this.baselineRttMs = windowRttMs
      this.windowsAtFloor = 0
    }
    // Gradient2's app-limited rule: below half the limit, the limit is not
    // what holds the service back, and a slower window is not queueing that a
    // lower limit would cure; it only eases back, so that a limit grown in an
    // earlier rush does not let the next overload's first seconds queue deep.
    let stale = false
    if (mostInFlight >= this.estimate / 2) stale = this.follow(windowRttMs) && nowMs >= this.staleProbeNotBeforeMs
    else this.ease(mostInFlight)
    if (stale) this.staleProbeNotBeforeMs = nowMs + STALE_PROBE_SPACING_WINDOWS * this.settings.windowMs
    if (nowMs >= this.nextProbeMs || stale) {
      this.anchor = undefined
      this.probeStartMs = nowMs
      this.limit = minLimit
    }
  }
}
