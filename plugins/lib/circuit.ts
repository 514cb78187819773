import { CircuitState, ConstantBackoff, circuitBreaker, handleWhen } from 'cockatiel'
import type { CircuitBreakerPolicy, FailureReason, IBackoff, IBackoffFactory, IDisposable, IHalfOpenAfterBackoffContext } from 'cockatiel'
import { CircuitOpenError, withRetryAfter } from '../errors.js'
import { neverAborted } from './abort.js'
import { callWithTimeout } from './timeout.js'
import type { CallContext } from './timeout.js'
import { WindowRatioBreaker } from './window-breaker.js'

/** `'isolated'` is an open circuit held open by hand with `isolate()`. */
export type BreakerState = 'closed' | 'open' | 'half-open' | 'isolated'

/** Outcome of one call, as counted by `circuit_breaker_calls_total{result}`. */
export type CallResult = 'success' | 'failure' | 'rejected'

/** Tells whether an error is the dependency's fault (counts towards opening). */
export type FailurePredicate = (error: unknown) => boolean

/** The settings of one breaker, every field resolved. */
export interface ResolvedBreakerOptions {
  failureRatio: number
  minimumCalls: number
  windowMs: number
  halfOpenAfterMs: number | IBackoffFactory<IHalfOpenAfterBackoffContext>
  halfOpenMaxCalls: number
  timeoutMs: number | undefined
  isFailure: FailurePredicate
}

/** What the plugin wants to hear about: metrics and logs. */
export interface BreakerObserver {
  counted: (breaker: Breaker, result: CallResult) => void
  opened: (breaker: Breaker, reason: FailureReason<unknown> | { isolated: true }) => void
  closed: (breaker: Breaker) => void
}

/** Health-check view of a breaker (`JSON.stringify(breaker)`). */
export interface BreakerSnapshot {
  name: string
  state: BreakerState
  /** Milliseconds until the breaker goes half-open; 0 unless open. */
  retryAfterMs: number
  /** Calls and failures counted in the current window (closed state). */
  window: { calls: number, failures: number }
  /** Trial calls admitted in the current half-open period. */
  halfOpenCalls: number
}

const DEFAULT_ISOLATED_RETRY_AFTER_MS = 30_000

/**
 * Records the duration cockatiel draws from the half-open backoff each time the
 * circuit opens, so that `state` and `retryAfterMs` can tell when half-open
 * begins without waiting for cockatiel's next call.
 */
class RecordingBackoff implements IBackoffFactory<IHalfOpenAfterBackoffContext> {
  lastDurationMs = 0
  private readonly inner: IBackoffFactory<IHalfOpenAfterBackoffContext>

  constructor (inner: IBackoffFactory<IHalfOpenAfterBackoffContext>) {
    this.inner = inner
  }

  next (context: IHalfOpenAfterBackoffContext): IBackoff<IHalfOpenAfterBackoffContext> {
    return this.wrap(this.inner.next(context))
  }

  private wrap (step: IBackoff<IHalfOpenAfterBackoffContext>): IBackoff<IHalfOpenAfterBackoffContext> {
    this.lastDurationMs = step.duration
    return { duration: step.duration, next: (context) => this.wrap(step.next(context)) }
  }
}

/**
 * A named circuit breaker: cockatiel 4's `circuitBreaker` with gobreaker's rules.
 *
 * Built on top of cockatiel where it differs:
 * - closed state: {@link WindowRatioBreaker} (ratio over a fixed time window
 *   with a minimum number of calls);
 * - half-open: cockatiel samples `halfOpenMaxCalls` trial calls
 *   (`halfOpenSampling`, threshold 0: one failure re-opens), but queues calls
 *   beyond them; this class counts the trials it admits since the circuit
 *   opened and refuses any further call at once instead;
 * - timing: cockatiel only moves from open to half-open on the next call; the
 *   delay it drew is recorded (RecordingBackoff), so `state` says `'half-open'`
 *   as soon as that time has passed;
 * - refusals: decided here before cockatiel runs (the same synchronous test
 *   cockatiel makes), so callers get `FST_RESILIENCE_CIRCUIT_OPEN` with
 *   `Retry-After` rather than cockatiel's BrokenCircuitError.
 */
export class Breaker {
  readonly name: string
  readonly options: ResolvedBreakerOptions
  private readonly policy: CircuitBreakerPolicy
  private readonly window: WindowRatioBreaker
  private readonly backoff: RecordingBackoff
  private readonly listeners: IDisposable[]
  private readonly observer: BreakerObserver
  /** Errors of calls whose caller gave up: not the dependency's fault, never counted. */
  private readonly abandoned = new WeakSet<object>()
  /** Whether an error counts against the dependency: cockatiel's filter, and the call metric. */
  private readonly counts = (error: unknown): boolean =>
    !(typeof error === 'object' && error !== null && this.abandoned.has(error)) && this.options.isFailure(error)

  private openedAt = 0
  private halfOpenCalls = 0

  constructor (name: string, options: ResolvedBreakerOptions, observer: BreakerObserver) {
    this.name = name
    this.options = options
    this.observer = observer
    this.window = new WindowRatioBreaker(options.failureRatio, options.minimumCalls, options.windowMs)
    const halfOpenAfter = options.halfOpenAfterMs
    this.backoff = new RecordingBackoff(typeof halfOpenAfter === 'number' ? new ConstantBackoff(halfOpenAfter) : halfOpenAfter)
    this.policy = circuitBreaker(handleWhen(this.counts), {
      breaker: this.window,
      halfOpenAfter: this.backoff,
      halfOpenSampling: { calls: options.halfOpenMaxCalls, threshold: 0 }
    })
    this.listeners = [
      this.policy.onBreak((reason) => {
        this.openedAt = Date.now()
        this.halfOpenCalls = 0
        observer.opened(this, reason)
      }),
      this.policy.onReset(() => observer.closed(this))
    ]
  }

  /** The state now; `'half-open'` as soon as the open period has elapsed. */
  get state (): BreakerState {
    switch (this.policy.state) {
      case CircuitState.Closed: return 'closed'
      case CircuitState.HalfOpen: return 'half-open'
      case CircuitState.Isolated: return 'isolated'
      default: return this.openRemainingMs() > 0 ? 'open' : 'half-open'
    }
  }

  /**
   * Milliseconds until the breaker lets trial calls through: the rest of the
   * open period; for an isolated breaker (no known end) the numeric
   * `halfOpenAfterMs`, or 30 s with a backoff; 0 when closed or half-open.
   */
  get retryAfterMs (): number {
    switch (this.state) {
      case 'open': return this.openRemainingMs()
      case 'isolated': return typeof this.options.halfOpenAfterMs === 'number' ? this.options.halfOpenAfterMs : DEFAULT_ISOLATED_RETRY_AFTER_MS
      default: return 0
    }
  }

  /**
   * Runs `fn` through the breaker. Refused at once with
   * `FST_RESILIENCE_CIRCUIT_OPEN` (503, `Retry-After`) while open or isolated,
   * or when half-open and all trial calls are taken. With `timeoutMs`, a slow
   * call is cut, counted as a failure, and its `signal` aborted.
   */
  execute<T>(fn: (context: CallContext) => PromiseLike<T> | T, signal: AbortSignal = neverAborted): Promise<T> {
    // Not async itself: one promise less per call.
    return this.run(fn, signal)
  }

  /**
   * Marks `error` as the fault of a caller that had gone away, not of the
   * dependency: it is then not counted. For callers without a signal to give
   * (the route pipeline checks its response), from inside `fn`, before the
   * error leaves it.
   * @internal
   */
  abandon (error: unknown): void {
    if (typeof error === 'object' && error !== null) this.abandoned.add(error)
  }

  private run<T>(fn: (context: CallContext) => PromiseLike<T> | T, signal: AbortSignal): Promise<T> {
    const state = this.state
    if (state === 'open' || state === 'isolated' ||
        (state === 'half-open' && this.halfOpenCalls >= this.options.halfOpenMaxCalls)) {
      return Promise.reject(this.refuse())
    }
    if (state === 'half-open') this.halfOpenCalls++
    const timeoutMs = this.options.timeoutMs
    // A caller that cannot give up and no timeout: cockatiel calls `fn` itself.
    const running = timeoutMs === undefined && signal === neverAborted
      ? this.policy.execute(fn)
      : this.policy.execute(async (context) => {
        try {
          return await (timeoutMs === undefined ? fn(context) : callWithTimeout(fn, context.signal, timeoutMs))
        } catch (error) {
          // Not the dependency's fault: cockatiel's filter (counts) skips it.
          if (signal.aborted) this.abandon(error)
          throw error
        }
      }, signal)
    // Callbacks made once per breaker, rather than an async layer per call.
    return running.then(this.succeeded, this.failed) as Promise<T>
  }

  private readonly succeeded = <T>(value: T): T => {
    this.observer.counted(this, 'success')
    return value
  }

  private readonly failed = (error: unknown): never => {
    this.observer.counted(this, this.counts(error) ? 'failure' : 'success')
    throw error
  }

  /** Holds the breaker open until every returned handle is disposed. */
  isolate (): { dispose: () => void } {
    return this.policy.isolate()
  }

  toJSON (): BreakerSnapshot {
    const { calls, failures } = this.window.state
    return { name: this.name, state: this.state, retryAfterMs: this.retryAfterMs, window: { calls, failures }, halfOpenCalls: this.state === 'half-open' ? this.halfOpenCalls : 0 }
  }

  /** Releases cockatiel listeners (the plugin calls this in `onClose`). */
  dispose (): void {
    for (const listener of this.listeners) listener.dispose()
    this.listeners.length = 0
  }

  private openRemainingMs (): number {
    return Math.max(0, this.openedAt + this.backoff.lastDurationMs - Date.now())
  }

  private refuse (): Error {
    this.observer.counted(this, 'rejected')
    return withRetryAfter(new CircuitOpenError(this.name), this.retryAfterMs)
  }
}
