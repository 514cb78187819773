import type { IBackoff, IBackoffFactory, IHalfOpenAfterBackoffContext } from 'cockatiel'
import { neverAborted } from '../time/abort.js'
import type { BreakerState, CallOutcome } from './circuit-state.js'

/** The fleet's state of one breaker as Redis last told it. */
export interface FleetState {
  state: BreakerState
  /** Bumped on every state change of the fleet's breaker. */
  generation: number
  /** Open: when the open period ends (ms since the epoch). */
  openUntil: number
  /** Openings in a row (the step of the open-period backoff). */
  openings: number
  /** Made with the Redis hash: generations compare only within one epoch. */
  epoch: string
}

/** How a fleet-wide breaker treats a new call. */
export type FleetAdmission = 'local' | 'refuse' | 'ask'

/** A trial asked of the fleet: granted (in the fleet's `generation`), refused, or left to the local breaker. */
export type TrialAnswer = { granted: true, generation: number } | { granted: false, local: boolean }

/** The settings of a breaker that the fleet's scripts need. */
export interface FleetSettings {
  failureRatio: number
  minimumCalls: number
  windowMs: number
  halfOpenMaxCalls: number
  halfOpenAfter: IBackoffFactory<IHalfOpenAfterBackoffContext>
  /** How long a granted trial may take before its slot is taken as lost. */
  trialLeaseMs: number
}

/** What a circuit asks of the store: the Redis side. */
export interface FleetLink {
  /** Subscribed to the fleet's channel now: changes are heard. */
  readonly subscribed: boolean
  /** Live instances of the fleet as last counted; undefined until counted. */
  readonly fleetInstances: number | undefined
  report: (circuit: FleetCircuit, generation: number, calls: number, failures: number) => void
  trial: (circuit: FleetCircuit) => Promise<TrialAnswer>
  settle: (circuit: FleetCircuit, generation: number, outcome: CallOutcome, openMs: number) => void
  isolate: (circuit: FleetCircuit, holds: number) => void
  /** Successes are sent in batches: asks for a flush within the batching period. */
  scheduleFlush: () => void
}

/** Longest walk along a backoff to find an opening's duration. */
const MAX_BACKOFF_STEPS = 64

/**
 * One breaker's side of the fleet: the fleet's state as last heard (the
 * closed path reads only this, never Redis), the counts not yet sent, and
 * the isolation handles this instance holds. The `Breaker` asks it how to
 * treat each call; the store keeps it up to date from the channel and from
 * the scripts' replies.
 */
export class FleetCircuit {
  readonly name: string
  readonly settings: FleetSettings
  private readonly link: FleetLink
  private readonly onChange: () => void
  /**
   * No command for this breaker failed since its state was last read (the
   * store says so with `track()`): its counts are sent. Each breaker has its
   * own, so a Redis Cluster slot that is lost makes only its own breakers
   * local-only.
   */
  private isTracked = false
  /** Its state was read since the subscription was last made: no change went unheard. */
  private isFresh = false
  private fleet: FleetState = { state: 'closed', generation: 0, openUntil: 0, openings: 0, epoch: '' }
  /** Successful calls and failures of generation `pendingGeneration` not sent yet. */
  private pendingCalls = 0
  private pendingFailures = 0
  private pendingGeneration = 0
  /**
   * The half-open generation whose trials are all taken, as a refusal said,
   * and when to ask again: by then the lease of every trial taken has run out
   * (a trial whose instance died frees its slot at its lease's end, unannounced).
   */
  private fullGeneration: number | undefined
  private askAgainAt = 0
  /** Isolation handles held by this instance: undefined until it first holds one (a release lost in an outage is sent again). */
  private holds: number | undefined

  constructor (name: string, settings: FleetSettings, link: FleetLink, onChange: () => void) {
    this.name = name
    this.settings = settings
    this.link = link
    this.onChange = onChange
  }

  /** The fleet's state is closed: the hot path's one check. */
  get closed (): boolean {
    return this.fleet.state === 'closed'
  }

  /** True while the fleet's state is followed through Redis. */
  get synced (): boolean {
    return this.known && this.link.subscribed
  }

  /** Whether no command for this breaker failed since its state was last read. */
  get tracked (): boolean {
    return this.isTracked
  }

  /** Its state is known: read since its last failed command and since the subscription was last made. */
  get known (): boolean {
    return this.isTracked && this.isFresh
  }

  /** The store read this breaker's state (true), or a command for it failed (false). */
  track (tracked: boolean): void {
    const known = this.known
    this.isTracked = tracked
    if (tracked) this.isFresh = true
    if (this.known !== known) this.onChange()
  }

  /** The subscription was lost: a change may go unheard until this breaker's state is read again. */
  stale (): void {
    this.isFresh = false
    this.onChange()
  }

  /** Live instances of the fleet as last counted (this one included). */
  get fleetInstances (): number | undefined {
    return this.link.fleetInstances
  }

  /** Isolation handles this instance holds; undefined if it never held one. */
  get isolationHolds (): number | undefined {
    return this.holds
  }

  /**
   * How to treat a call while the fleet is not closed (on the closed path the
   * local breaker decides, with no Redis): an open or isolated fleet refuses;
   * a half-open fleet grants trials through Redis. While Redis is
   * unreachable, a known open period and an isolation still hold, and
   * everything else is the local breaker's.
   */
  admission (now: number): FleetAdmission {
    const { state, openUntil, generation } = this.fleet
    if (state === 'isolated') return 'refuse'
    if (state === 'open' && now < openUntil) return 'refuse'
    if (!this.synced) return 'local'
    return this.fullGeneration === generation && now < this.askAgainAt ? 'refuse' : 'ask'
  }

  /** The fleet's generation for a call admitted on the closed path now. */
  get generation (): number {
    return this.fleet.generation
  }

  /**
   * The fleet's state now as it applies to this instance, or `undefined` when
   * the local breaker decides (the fleet is closed, or half-open while Redis is
   * unreachable). An open period that ended reads as half-open.
   */
  stateAt (now: number): BreakerState | undefined {
    const state = this.fleet.state === 'open' && now >= this.fleet.openUntil ? 'half-open' : this.fleet.state
    if (state === 'closed' || (state === 'half-open' && !this.synced)) return undefined
    return state
  }

  /** Milliseconds left of the fleet's open period (0 unless open). */
  openRemainingMs (now: number): number {
    return this.fleet.state === 'open' ? Math.max(0, this.fleet.openUntil - now) : 0
  }

  /**
   * Counts the result of a call admitted on the closed path in the fleet's
   * `generation`: failures are sent at once (with the successes pending),
   * successes within the batching period. Results of an older generation,
   * and neutral ones, count for nothing. They are sent while this breaker's
   * commands work, even with the subscription lost: Redis checks their
   * generation, and its reply brings the fleet's state.
   */
  record (generation: number, outcome: CallOutcome): void {
    if (outcome === 'neutral' || generation !== this.fleet.generation || this.fleet.state !== 'closed' || !this.isTracked) return
    if (generation !== this.pendingGeneration) this.dropPending(generation)
    this.pendingCalls++
    if (outcome === 'failure') {
      this.pendingFailures++
      this.flush()
    } else {
      this.link.scheduleFlush()
    }
  }

  /** Sends the pending counts, if any are still of the fleet's generation. */
  flush (): void {
    if (this.pendingCalls === 0) return
    const { pendingGeneration, pendingCalls, pendingFailures } = this
    this.dropPending(pendingGeneration)
    if (pendingGeneration === this.fleet.generation && this.fleet.state === 'closed') this.link.report(this, pendingGeneration, pendingCalls, pendingFailures)
  }

  /** Asks the fleet for a trial slot (the caller has seen `admission()` say `'ask'`). */
  async trial (): Promise<TrialAnswer> {
    const answer = await this.link.trial(this)
    if (!answer.granted && !answer.local && this.fleet.state === 'half-open') {
      this.fullGeneration = this.fleet.generation
      this.askAgainAt = Date.now() + this.settings.trialLeaseMs
    }
    return answer
  }

  /** Settles a trial granted in the fleet's `generation`. */
  settleTrial (generation: number, outcome: CallOutcome, error: unknown): void {
    this.link.settle(this, generation, outcome, outcome === 'failure' ? this.openMs(this.fleet.openings + 1, error) : 0)
  }

  /** The open period of the `attempt`-th opening in a row, from the breaker's backoff. */
  openMs (attempt: number, error: unknown): number {
    const context: IHalfOpenAfterBackoffContext = { attempt: 1, result: { error }, signal: neverAborted }
    let backoff: IBackoff<IHalfOpenAfterBackoffContext> = this.settings.halfOpenAfter.next(context)
    for (let step = 2; step <= Math.min(attempt, MAX_BACKOFF_STEPS); step++) {
      context.attempt = step
      backoff = backoff.next(context)
    }
    return Math.max(1, Math.round(backoff.duration))
  }

  /** Holds the whole fleet's breaker isolated until the handle is disposed. */
  isolate (): { dispose: () => void } {
    this.holds = (this.holds ?? 0) + 1
    this.link.isolate(this, this.holds)
    let disposed = false
    return {
      dispose: () => {
        if (disposed) return
        disposed = true
        this.holds = (this.holds as number) - 1
        this.link.isolate(this, this.holds)
      }
    }
  }

  /**
   * Applies a state Redis gave (a message, or a script's reply) if it is
   * newer than what is held: a later generation, or another epoch (Redis
   * lost its data and started over). Replies and messages can arrive out of
   * order (they come on two connections), so an older one changes nothing.
   */
  apply (next: FleetState): void {
    const current = this.fleet
    if (next.epoch === current.epoch && next.generation <= current.generation) return
    this.fleet = next
    this.onChange()
  }

  /** A neutral trial freed a slot of `generation`: ask again. */
  slotFreed (generation: number, epoch: string): void {
    if (generation === this.fullGeneration && epoch === this.fleet.epoch) this.fullGeneration = undefined
  }

  private dropPending (generation: number): void {
    this.pendingGeneration = generation
    this.pendingCalls = 0
    this.pendingFailures = 0
  }
}
