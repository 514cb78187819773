import type { IBackoff, IBackoffFactory, IHalfOpenAfterBackoffContext } from 'cockatiel'
import { neverAborted } from '../time/abort.js'

/** `'isolated'` is an open circuit held open by hand with `isolate()`. */
export type BreakerState = 'closed' | 'open' | 'half-open' | 'isolated'

/**
 * How an admitted call ended, as the state machine sees it: `'neutral'` is an
 * error that proves nothing about the dependency (gobreaker's `IsExcluded`).
 */
export type CallOutcome = 'success' | 'failure' | 'neutral'

/** The settings the state machine reads. */
export interface CircuitSettings {
  failureRatio: number
  minimumCalls: number
  windowMs: number
  halfOpenMaxCalls: number
  halfOpenAfter: IBackoffFactory<IHalfOpenAfterBackoffContext>
}

/** Told of every state change; `error` is the failure that opened the circuit. */
export type TransitionListener = (from: BreakerState, to: BreakerState, error: unknown) => void

/**
 * gobreaker's state machine, with its generations.
 *
 * A generation starts whenever the counts are cleared: a closed window that
 * expires, and every state change. Each admitted call carries the generation
 * it was admitted in, and its result counts only if that generation is still
 * the current one, so a late result never lands in a window or a state it did
 * not belong to. Calls are counted when admitted, so slow calls still in
 * flight are part of the ratio; in half-open, a neutral call frees its trial
 * slot and changes nothing else.
 *
 * Cockatiel's `CircuitBreakerPolicy` cannot carry this: it reports results to
 * its `IBreaker` without saying which call they belong to, and counts an error
 * its filter skips as a half-open success. Cockatiel still supplies the
 * open-period backoff (`halfOpenAfter`).
 */
export class CircuitStateMachine {
  /** Bumped when the counts are cleared: a new window, or any state change. */
  generation = 0
  private current: BreakerState = 'closed'
  private readonly settings: CircuitSettings
  private readonly onTransition: TransitionListener
  /** Closed: calls admitted (less the neutral ones) and failures in the window. */
  private calls = 0
  private failures = 0
  /** Closed: end of the window; 0 until its first call. */
  private windowEndsAt = 0
  /** Half-open: trial slots taken, and trials that succeeded. */
  private trials = 0
  private trialSuccesses = 0
  /** Open: the backoff step drawn for this opening, and when it ends. */
  private backoff: IBackoff<IHalfOpenAfterBackoffContext> | undefined
  private openings = 0
  private openUntil = 0
  /** Isolated: handles not yet disposed. */
  private isolations = 0

  constructor (settings: CircuitSettings, onTransition: TransitionListener) {
    this.settings = settings
    this.onTransition = onTransition
  }

  /** The state now: an open circuit whose period has passed is half-open. */
  get state (): BreakerState {
    return this.refresh(Date.now())
  }

  /** Milliseconds until an open circuit goes half-open; 0 in other states. */
  get openRemainingMs (): number {
    const now = Date.now()
    return this.refresh(now) === 'open' ? this.openUntil - now : 0
  }

  /** Counts of the current generation (all 0 unless closed). */
  get window (): { calls: number, failures: number } {
    return this.refresh(Date.now()) === 'closed' ? { calls: this.calls, failures: this.failures } : { calls: 0, failures: 0 }
  }

  /** Trial calls holding a slot in the current half-open period. */
  get halfOpenCalls (): number {
    return this.refresh(Date.now()) === 'half-open' ? this.trials : 0
  }

  /** Admits a call and counts it: its generation, or undefined when it must be refused. */
  admit (): number | undefined {
    const now = Date.now()
    const state = this.refresh(now)
    if (state === 'closed') {
      if (this.windowEndsAt === 0) this.windowEndsAt = now + this.settings.windowMs
      this.calls++
      return this.generation
    }
    if (state === 'half-open' && this.trials < this.settings.halfOpenMaxCalls) {
      this.trials++
      return this.generation
    }
    return undefined
  }

  /** Records how a call admitted in `generation` ended; a late result changes nothing. */
  settle (generation: number, outcome: CallOutcome, error?: unknown): void {
    if (generation !== this.generation) return
    // A success changes no closed-state count: the call was counted when admitted.
    if (outcome === 'success' && this.current === 'closed') return
    const state = this.refresh(Date.now())
    if (generation !== this.generation) return
    if (state === 'closed') {
      if (outcome === 'neutral') {
        // A window that holds only neutral calls has not started: it starts with the next call that counts, as the fleet's does.
        if (--this.calls === 0 && this.failures === 0) this.windowEndsAt = 0
      } else {
        this.failures++
        if (this.calls >= this.settings.minimumCalls && this.failures / this.calls >= this.settings.failureRatio) this.open(error)
      }
      return
    }
    // Half-open: calls are admitted only while closed or half-open, and every change bumps the generation.
    if (outcome === 'neutral') {
      this.trials--
    } else if (outcome === 'failure') {
      this.open(error)
    } else if (++this.trialSuccesses >= this.settings.halfOpenMaxCalls) {
      this.moveTo('closed', undefined)
    }
  }

  /** Holds the circuit open until every returned handle is disposed. */
  isolate (): { dispose: () => void } {
    if (this.current !== 'isolated') {
      this.moveTo('isolated', undefined)
      this.isolations = 0
    }
    this.isolations++
    let disposed = false
    return {
      dispose: () => {
        if (disposed) return
        disposed = true
        if (--this.isolations === 0) this.moveTo('closed', undefined)
      }
    }
  }

  /** Applies what time alone changes: a closed window expiring, an open period ending. */
  private refresh (now: number): BreakerState {
    if (this.current === 'closed') {
      if (this.windowEndsAt !== 0 && now >= this.windowEndsAt) this.newGeneration()
    } else if (this.current === 'open' && now >= this.openUntil) {
      this.moveTo('half-open', undefined)
    }
    return this.current
  }

  private open (error: unknown): void {
    const context: IHalfOpenAfterBackoffContext = { attempt: 0, result: { error }, signal: neverAborted }
    // Re-opening from half-open takes the backoff's next step; opening from closed starts it over.
    if (this.current === 'half-open') {
      context.attempt = ++this.openings
      this.backoff = (this.backoff as IBackoff<IHalfOpenAfterBackoffContext>).next(context)
    } else {
      context.attempt = this.openings = 1
      this.backoff = this.settings.halfOpenAfter.next(context)
    }
    this.openUntil = Date.now() + this.backoff.duration
    this.moveTo('open', error)
  }

  private moveTo (state: BreakerState, error: unknown): void {
    const from = this.current
    this.current = state
    this.newGeneration()
    this.onTransition(from, state, error)
  }

  private newGeneration (): void {
    this.generation++
    this.calls = 0
    this.failures = 0
    this.windowEndsAt = 0
    this.trials = 0
    this.trialSuccesses = 0
  }
}
