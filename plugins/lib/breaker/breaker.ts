import { ConstantBackoff } from 'cockatiel'
import type { IBackoffFactory, IHalfOpenAfterBackoffContext } from 'cockatiel'
import { CircuitOpenError, withRetryAfter } from '../../errors.js'
import { neverAborted } from '../time/abort.js'
import { CircuitStateMachine } from './circuit-state.js'
import type { BreakerState, CallOutcome } from './circuit-state.js'
import type { FleetCircuit, FleetSettings } from './fleet-circuit.js'
import { Deadlines } from '../time/deadlines.js'
import { callWithTimeout } from '../time/timeout.js'
import type { CallContext } from '../time/timeout.js'

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
  /** Fleet-wide (the plugin has `shared` and the breaker did not say `shared: false`). */
  shared: boolean
}

/** What the plugin wants to hear about: metrics and logs. */
export interface BreakerObserver {
  counted: (breaker: Breaker, result: CallResult) => void
  /**
   * Every state change; `error` is the failure that opened the circuit;
   * `scope` says whether this instance's breaker changed or the fleet's.
   */
  changed: (breaker: Breaker, from: BreakerState, to: BreakerState, error: unknown, scope: 'local' | 'fleet') => void
}

/** Makes a breaker fleet-wide: joins it to the store that keeps the fleet's state. */
export type FleetJoin = (name: string, settings: FleetSettings, onChange: () => void, localOpenMs: () => number) => FleetCircuit

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
  /**
   * Fleet-wide breakers only: `'synced'` while the fleet's state is followed
   * through Redis, `'local-only'` while Redis is unreachable and this
   * instance's breaker decides alone.
   */
  shared?: 'synced' | 'local-only'
  /**
   * Fleet-wide breakers only: the instances of the fleet alive as this one
   * last counted them (itself included), once counted: the fleet trips on
   * failures from `min(quorum, fleetInstances)` instances.
   */
  fleetInstances?: number
}

const DEFAULT_ISOLATED_RETRY_AFTER_MS = 30_000
/**
 * Where a call was admitted, so that its result is settled where it was
 * counted: by this instance's breaker in its `generation` (the fleet hears it
 * as a call of its `fleetGeneration`), or as a trial the fleet granted.
 */
type Admission = { trial: false, generation: number, fleetGeneration: number } | { trial: true, fleetGeneration: number }
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
  /** Fleet-wide breakers: the fleet's state as this instance follows it. */
  private readonly fleet: FleetCircuit | undefined
  /** The fleet state last reported to the observer. */
  private fleetState: BreakerState = 'closed'

  /**
   * @param join makes the breaker fleet-wide (the plugin's `shared` option).
   */
  constructor (name: string, options: ResolvedBreakerOptions, observer: BreakerObserver, join?: FleetJoin) {
    this.name = name
    this.options = options
    this.observer = observer
    this.deadlines = options.timeoutMs === undefined ? undefined : new Deadlines(options.timeoutMs)
    const halfOpenAfter = options.halfOpenAfterMs
    const settings = {
      failureRatio: options.failureRatio,
      minimumCalls: options.minimumCalls,
      windowMs: options.windowMs,
      halfOpenMaxCalls: options.halfOpenMaxCalls,
      halfOpenAfter: typeof halfOpenAfter === 'number' ? new ConstantBackoff(halfOpenAfter) : halfOpenAfter
    }
    this.machine = new CircuitStateMachine(settings, (from, to, error) => {
      if (!this.disposed) observer.changed(this, from, to, error, 'local')
    })
    // A trial whose result never reached Redis frees its fleet slot after this long.
    const trialLeaseMs = options.timeoutMs ?? options.windowMs
    this.fleet = join?.(name, { ...settings, trialLeaseMs }, () => this.fleetChanged(), () => this.machine.openRemainingMs)
  }

  /**
   * The state now; `'half-open'` as soon as the open period has elapsed. For
   * a fleet-wide breaker: the fleet's open or isolated state, else this
   * instance's own open or isolated state, else the fleet's half-open, else
   * this instance's.
   */
  get state (): BreakerState {
    const local = this.machine.state
    const fleet = this.fleet?.stateAt(Date.now())
    if (fleet === undefined || (fleet === 'half-open' && (local === 'open' || local === 'isolated'))) return local
    return fleet
  }

  /**
   * Milliseconds until the breaker lets trial calls through: the rest of the
   * open period; for an isolated breaker (no known end) the numeric
   * `halfOpenAfterMs`, or 30 s with a backoff; 0 when closed or half-open.
   */
  get retryAfterMs (): number {
    if (this.state === 'isolated') return typeof this.options.halfOpenAfterMs === 'number' ? this.options.halfOpenAfterMs : DEFAULT_ISOLATED_RETRY_AFTER_MS
    return Math.max(this.machine.openRemainingMs, this.fleet?.openRemainingMs(Date.now()) ?? 0)
  }

  /**
   * Runs `fn` through the breaker. Refused at once with
   * `FST_RESILIENCE_CIRCUIT_OPEN` (503, `Retry-After`) while open or isolated,
   * or when half-open and all trial calls are taken. With `timeoutMs`, a slow
   * call is cut, counted as a failure, and its `signal` aborted. A call whose
   * `signal` was aborted by its caller is neutral: it proves nothing.
   */
  execute<T>(fn: (context: CallContext) => PromiseLike<T> | T, signal: AbortSignal = neverAborted): Promise<T> {
    const fleet = this.fleet
    // A closed fleet leaves the call to this instance's breaker: no clock read, no Redis.
    if (fleet !== undefined && !fleet.closed) {
      const admission = fleet.admission(Date.now())
      if (admission === 'refuse') return Promise.reject(this.refuse())
      if (admission === 'ask') return this.executeTrial(fleet, fn, signal)
    }
    return this.executeLocal(fn, signal)
  }

  /** The closed path: this instance's breaker admits, and the fleet hears the result later. */
  private executeLocal<T>(fn: (context: CallContext) => PromiseLike<T> | T, signal: AbortSignal): Promise<T> {
    const generation = this.machine.admit()
    if (generation === undefined) return Promise.reject(this.refuse())
    return this.run(fn, signal, { trial: false, generation, fleetGeneration: this.fleet === undefined ? 0 : this.fleet.generation })
  }

  /** A half-open fleet: one of its trials, granted by Redis; Redis unreachable leaves it to this instance's breaker. */
  private async executeTrial<T>(fleet: FleetCircuit, fn: (context: CallContext) => PromiseLike<T> | T, signal: AbortSignal): Promise<T> {
    const local = this.machine.state
    // This instance's own path is broken: it takes no trial of the fleet's.
    if (local === 'open' || local === 'isolated') throw this.refuse()
    const answer = await fleet.trial()
    if (answer.granted) return await this.run(fn, signal, { trial: true, fleetGeneration: answer.generation })
    if (answer.local) return await this.executeLocal(fn, signal)
    throw this.refuse()
  }

  /** Runs an admitted call and settles its outcome where it was admitted. */
  private run<T>(fn: (context: CallContext) => PromiseLike<T> | T, signal: AbortSignal, admission: Admission): Promise<T> {
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
      this.settle(admission, 'success', undefined)
      return value
    }, (error: unknown) => {
      const outcome = signal.aborted ? 'neutral' : this.judge(error)
      this.observer.counted(this, outcome === 'failure' ? 'failure' : 'success')
      this.settle(admission, outcome, error)
      throw error
    })
  }

  private settle (admission: Admission, outcome: CallOutcome, error: unknown): void {
    if (admission.trial) {
      this.fleet?.settleTrial(admission.fleetGeneration, outcome, error)
      return
    }
    this.machine.settle(admission.generation, outcome, error)
    this.fleet?.record(admission.fleetGeneration, outcome)
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

  /**
   * Holds the breaker open until every returned handle is disposed. A
   * fleet-wide breaker is held open on every instance (this one at once,
   * the others as soon as Redis tells them), until every instance's handles
   * are disposed.
   */
  isolate (): { dispose: () => void } {
    const local = this.machine.isolate()
    const fleet = this.fleet?.isolate()
    return {
      dispose: () => {
        local.dispose()
        fleet?.dispose()
      }
    }
  }

  toJSON (): BreakerSnapshot {
    const snapshot: BreakerSnapshot = { name: this.name, state: this.state, retryAfterMs: this.retryAfterMs, window: this.machine.window, halfOpenCalls: this.machine.halfOpenCalls }
    if (this.fleet !== undefined) {
      snapshot.shared = this.fleet.synced ? 'synced' : 'local-only'
      const instances = this.fleet.fleetInstances
      if (instances !== undefined) snapshot.fleetInstances = instances
    }
    return snapshot
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

  /** The fleet's state (or whether Redis is followed) changed: tell the observer what this instance now applies. */
  private fleetChanged (): void {
    const next = (this.fleet as FleetCircuit).stateAt(Date.now()) ?? 'closed'
    if (next === this.fleetState) return
    const from = this.fleetState
    this.fleetState = next
    if (!this.disposed) this.observer.changed(this, from, next, undefined, 'fleet')
  }

  private refuse (): Error {
    this.observer.counted(this, 'rejected')
    return withRetryAfter(new CircuitOpenError(this.name), this.retryAfterMs)
  }
}
