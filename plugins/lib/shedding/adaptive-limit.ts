/**
 * A concurrency limit learnt from latency: a gradient on round-trip times
 * after Netflix concurrency-limits' Gradient2Limit and Envoy's adaptive
 * concurrency filter. Pure and clock-injected: no timers, the limit moves only
 * when a finished request closes a sample window.
 *
 * Each window (at least `windowMs` long and `minSamples` requests) gives a
 * short-term RTT, its average. The long-term RTT is the baseline: the RTT of
 * the service without queueing. Then, as in both sources:
 *
 *     gradient = clamp(rttTolerance * baseline / windowRtt, 0.5, 1)
 *     gradient < 1 (queueing):  limit shrinks by smoothing * (1 - gradient)
 *     gradient = 1:             limit grows by sqrt(limit) (Envoy's headroom)
 *
 * The sqrt headroom is added only when nothing queues: added under queueing
 * too (as Gradient2 does) it outweighs a mild gradient and the limit creeps up
 * forever.
 * While the service uses less than half the limit, the limit moves neither
 * way (Gradient2's app-limited rule): an idle service does not open up to
 * `maxLimit`, and a slower mix of requests at low load does not shrink it
 * (that latency is not queueing a lower limit would cure; shrinking would
 * only refuse the next burst).
 *
 * The baseline is measured as Envoy does: the first window runs at
 * `minLimit` (a window measured at `initialLimit` under load would include
 * queueing, and the limit would settle that much too high), and so does one
 * window every `probeIntervalMs` (jittered by up to 15 %, so a fleet started
 * together does not probe together), counting only requests admitted during
 * it; the previous limit is restored afterwards. Between probes the baseline
 * follows any lower window RTT at once, and a limit held at `minLimit` for 5
 * windows in a row takes its RTT as the baseline (Envoy's rule: at the floor
 * the RTT is as unqueued as it gets). Sooner still, a limit that shrank by a
 * quarter while the RTT did not come down by a tenth means the service got
 * slower, not more queued, and the baseline is probed again at once (without
 * this, a service time that doubles walks the limit down to its floor,
 * below the connection pool, before the floor rule fires). So a baseline that
 * became too low cannot hold the limit down for more than a few windows, and
 * one that became too high (it got faster) is corrected by the next probe. Gradient2's long moving average is not used: under sustained
 * load it drifts up to the loaded RTT, and the limit inflates with the
 * latency it should prevent.
 *
 * Only successful requests are samples: failures are often fast, and a fast
 * failure taken as capacity would shrink the baseline and collapse the limit.
 */

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

export type AdaptiveLimitSettings = Required<AdaptiveLimitOptions>

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
const PROBE_JITTER = 0.15
/**
 * A limit shrunk to this share of where the shrinking started, with the RTT
 * still above this share of what it was then, means the service got slower,
 * not more queued: the baseline is measured again at once.
 */
const STALE_LIMIT_SHARE = 0.75
/**
 * Windows after a re-measurement forced by a stale baseline before another
 * may be forced: near capacity, queueing alone can look stale for a while,
 * and each re-measurement refuses what is above `minLimit` for a window.
 */
const STALE_PROBE_SPACING_WINDOWS = 50
/** Below half the limit, it eases back towards this many times the requests in flight. */
const APP_LIMITED_HEADROOM = 4
const STALE_RTT_SHARE = 0.9

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
   * true when the baseline looks stale: queueing answers a smaller limit with
   * a lower RTT, so a limit shrunk by a quarter with an RTT not down by a
   * tenth means the service itself got slower, and the baseline is measured
   * again now, not at the next probe nor once the limit sits on its floor.
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
    // Gradient2's rule: while the service uses less than half the limit, the
    // limit is not what holds it back, and a slower window (a heavier mix of
    // requests, a slower dependency) is not queueing that a lower limit would
    // cure: the limit moves neither way. Shrinking it there would only refuse
    // the next burst.
    // It only eases back towards APP_LIMITED_HEADROOM times the window's
    // peak (never below `initialLimit`), so that a limit grown in an earlier
    // rush does not let the next overload's first seconds queue deep.
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
