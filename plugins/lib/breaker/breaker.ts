import { ConstantBackoff } from 'cockatiel'
import type { IBackoffFactory, IHalfOpenAfterBackoffContext } from 'cockatiel'
import { CircuitOpenError, withRetryAfter } from '../../errors.js'
import { neverAborted } from '../shared/abort.js'
import { CircuitStateMachine, REFUSED } from './circuit-state.js'
import type { BreakerState, CallOutcome } from './circuit-state.js'
import { Deadlines } from '../shared/deadlines.js'
import { callWithTimeout } from '../shared/timeout.js'
import type { CallContext } from '../shared/timeout.js'

export type { BreakerState } from './circuit-state.js'

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
  /** Every state change; `error` is the failure that opened the circuit. */
  changed: (breaker: Breaker, from: BreakerState, to: BreakerState, error: unknown) => void
}

/** Health-check view of a breaker (`JSON.stringify(breaker)`). */
export interface BreakerSnapshot {
  name: string
  state: BreakerState
  /** Milliseconds until the breaker goes half-open; 0 unless open. */
  retryAfterMs: number
  /** Calls and failures counted in the current window (0 unless closed). */
  window: { calls: number, failures: number }
  /** Trial calls holding a slot in the current half-open period. */
  halfOpenCalls: number
}

const DEFAULT_ISOLATED_RETRY_AFTER_MS = 30_000
/** The context of calls whose caller cannot give up, made once. */
const UNABORTABLE: CallContext = Object.freeze({ signal: neverAborted })

/**
 * A named circuit breaker with gobreaker's rules: a ratio of failures over a
 * fixed window with a minimum of calls, calls counted when admitted, late
 * results ignored (generations, see {@link CircuitStateMachine}), at most
 * `halfOpenMaxCalls` trials while half-open (more are refused at once, never
 * queued), and errors that prove nothing about the dependency left neutral.
 * The open period comes from a cockatiel backoff.
 */
export class Breaker {
  readonly name: string
  readonly options: ResolvedBreakerOptions
  private readonly machine: CircuitStateMachine
  private readonly observer: BreakerObserver
  private disposed = false
  /** The deadlines of `timeoutMs`: one timer for all the breaker's calls. */
  private readonly deadlines: Deadlines | undefined
  /** Errors of calls whose caller gave up: not the dependency's fault, never counted. */
  private readonly abandoned = new WeakSet<object>()

  constructor (name: string, options: ResolvedBreakerOptions, observer: BreakerObserver) {
    this.name = name
    this.options = options
    this.observer = observer
    this.deadlines = options.timeoutMs === undefined ? undefined : new Deadlines(options.timeoutMs)
    const halfOpenAfter = options.halfOpenAfterMs
    this.machine = new CircuitStateMachine({
      failureRatio: options.failureRatio,
      minimumCalls: options.minimumCalls,
      windowMs: options.windowMs,
      halfOpenMaxCalls: options.halfOpenMaxCalls,
      halfOpenAfter: typeof halfOpenAfter === 'number' ? new ConstantBackoff(halfOpenAfter) : halfOpenAfter
    }, (from, to, error) => {
      if (!this.disposed) observer.changed(this, from, to, error)
    })
  }

  /** The state now; `'half-open'` as soon as the open period has elapsed. */
  get state (): BreakerState {
    return this.machine.state
  }

  /**
   * Milliseconds until the breaker lets trial calls through: the rest of the
   * open period; for an isolated breaker (no known end) the numeric
   * `halfOpenAfterMs`, or 30 s with a backoff; 0 when closed or half-open.
   */
  get retryAfterMs (): number {
    if (this.machine.state !== 'isolated') return this.machine.openRemainingMs
    return typeof this.options.halfOpenAfterMs === 'number' ? this.options.halfOpenAfterMs : DEFAULT_ISOLATED_RETRY_AFTER_MS
  }

  /**
   * Runs `fn` through the breaker. Refused at once with
   * `FST_RESILIENCE_CIRCUIT_OPEN` (503, `Retry-After`) while open or isolated,
   * or when half-open and all trial calls are taken. With `timeoutMs`, a slow
   * call is cut, counted as a failure, and its `signal` aborted. A call whose
   * `signal` was aborted by its caller is neutral: it proves nothing.
   */
  execute<T>(fn: (context: CallContext) => PromiseLike<T> | T, signal: AbortSignal = neverAborted): Promise<T> {
    const generation = this.machine.admit()
    if (generation === REFUSED) return Promise.reject(this.refuse())
    let running: PromiseLike<T> | T
    try {
      running = this.deadlines === undefined
        ? fn(signal === neverAborted ? UNABORTABLE : { signal })
        : callWithTimeout(fn, signal, this.deadlines)
    } catch (error) {
      running = Promise.reject(error)
    }
    return Promise.resolve(running).then((value) => {
      this.observer.counted(this, 'success')
      this.machine.settle(generation, 'success')
      return value
    }, (error: unknown) => {
      const outcome = signal.aborted ? 'neutral' : this.judge(error)
      this.observer.counted(this, outcome === 'failure' ? 'failure' : 'success')
      this.machine.settle(generation, outcome, error)
      throw error
    })
  }

  /**
   * Marks `error` as the fault of a caller that had gone away, not of the
   * dependency: it is then neutral. For callers without a signal to give
   * (the route pipeline checks its response), from inside `fn`, before the
   * error leaves it.
   * @internal
   */
  abandon (error: unknown): void {
    if (typeof error === 'object' && error !== null) this.abandoned.add(error)
  }

  /** Holds the breaker open until every returned handle is disposed. */
  isolate (): { dispose: () => void } {
    return this.machine.isolate()
  }

  toJSON (): BreakerSnapshot {
    return { name: this.name, state: this.state, retryAfterMs: this.retryAfterMs, window: this.machine.window, halfOpenCalls: this.machine.halfOpenCalls }
  }

  /** Stops telling the plugin about state changes (it calls this in `onClose`). */
  dispose (): void {
    this.disposed = true
  }

  /** A predicate that throws must not leave the call unsettled (a half-open slot taken for ever). */
  private judge (error: unknown): CallOutcome {
    if (typeof error === 'object' && error !== null && this.abandoned.has(error)) return 'neutral'
    try {
      return this.options.isFailure(error) ? 'failure' : 'neutral'
    } catch {
      return 'failure'
    }
  }

  private refuse (): Error {
    this.observer.counted(this, 'rejected')
    return withRetryAfter(new CircuitOpenError(this.name), this.retryAfterMs)
  }
}
