import type { IBackoff, IBackoffFactory, IHalfOpenAfterBackoffContext } from 'cockatiel'
import { neverAborted } from '../shared/abort.js'
import type { BreakerState, CallOutcome } from './circuit-state.js'

/** The fleet's state of one breaker as Redis last told it. */
export interface FleetState {
  state: BreakerState
  gen: number
  /** Open: when the open period ends (ms since the epoch). */
  till: number
  /** Openings in a row (the step of the open-period backoff). */
  openings: number
  /** Made with the Redis hash: generations compare only within one epoch. */
  epoch: string
}

/** How a fleet-wide breaker treats a new call. */
export type FleetAdmission = 'local' | 'refuse' | 'ask'

/** A trial asked of the fleet: granted (in generation `gen`), refused, or left to the local breaker. */
export type TrialAnswer = { granted: true, gen: number } | { granted: false, local: boolean }

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
  /** True while Redis answers: the fleet's state is known and followed. */
  readonly synced: boolean
  report: (circuit: FleetCircuit, gen: number, calls: number, failures: number) => void
  trial: (circuit: FleetCircuit) => Promise<TrialAnswer>
  settle: (circuit: FleetCircuit, gen: number, outcome: CallOutcome, openMs: number) => void
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
  private fleet: FleetState = { state: 'closed', gen: 0, till: 0, openings: 0, epoch: '' }
  /** Successful calls and failures of generation `pendingGen` not sent yet. */
  private pendingCalls = 0
  private pendingFailures = 0
  private pendingGen = 0
  /** The half-open generation whose trials are all taken, as a refusal said. */
  private fullGen = -1
  /** Isolation handles held by this instance; whether it ever held one (so a release lost in an outage is sent again). */
  private holds = 0
  private everIsolated = false

  constructor (name: string, settings: FleetSettings, link: FleetLink, onChange: () => void) {
    this.name = name
    this.settings = settings
    this.link = link
    this.onChange = onChange
  }

  get state (): FleetState {
    return this.fleet
  }

  /** The fleet's state is closed: the hot path's one check. */
  get closed (): boolean {
    return this.fleet.state === 'closed'
  }

  /** True while the fleet's state is followed through Redis. */
  get synced (): boolean {
    return this.link.synced
  }

  get isolationHolds (): number {
    return this.everIsolated ? this.holds : -1
  }

  /**
   * How to treat a call while the fleet is not closed (on the closed path the
   * local breaker decides, with no Redis): an open or isolated fleet refuses;
   * a half-open fleet grants trials through Redis. While Redis is
   * unreachable, a known open period and an isolation still hold, and
   * everything else is the local breaker's.
   */
  admission (now: number): FleetAdmission {
    const { state, till, gen } = this.fleet
    if (state === 'isolated') return 'refuse'
    if (state === 'open' && now < till) return 'refuse'
    if (!this.link.synced) return 'local'
    return this.fullGen === gen ? 'refuse' : 'ask'
  }

  /** The fleet's generation for a call admitted on the closed path now. */
  get gen (): number {
    return this.fleet.gen
  }

  /**
   * The fleet's state now as it applies to this instance, or `undefined` when
   * the local breaker decides (the fleet is closed, or half-open while Redis is
   * unreachable). An open period that ended reads as half-open.
   */
  stateAt (now: number): BreakerState | undefined {
    const state = this.fleet.state === 'open' && now >= this.fleet.till ? 'half-open' : this.fleet.state
    if (state === 'closed' || (state === 'half-open' && !this.link.synced)) return undefined
    return state
  }

  /** Milliseconds left of the fleet's open period (0 unless open). */
  openRemainingMs (now: number): number {
    return this.fleet.state === 'open' ? Math.max(0, this.fleet.till - now) : 0
  }

  /**
   * Counts the result of a call admitted on the closed path in generation
   * `gen`: failures are sent at once (with the successes pending), successes
   * within the batching period. Results of an older generation, and neutral
   * ones, count for nothing.
   */
  record (gen: number, outcome: CallOutcome): void {
    if (outcome === 'neutral' || gen !== this.fleet.gen || this.fleet.state !== 'closed' || !this.link.synced) return
    if (gen !== this.pendingGen) this.dropPending(gen)
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
    const { pendingGen, pendingCalls, pendingFailures } = this
    this.dropPending(pendingGen)
    if (pendingGen === this.fleet.gen && this.fleet.state === 'closed') this.link.report(this, pendingGen, pendingCalls, pendingFailures)
  }

  /** Asks the fleet for a trial slot (the caller has seen `admission()` say `'ask'`). */
  async trial (): Promise<TrialAnswer> {
    const answer = await this.link.trial(this)
    if (!answer.granted && !answer.local && this.fleet.state === 'half-open') this.fullGen = this.fleet.gen
    return answer
  }

  /** Settles a trial granted in generation `gen`. */
  settleTrial (gen: number, outcome: CallOutcome, error: unknown): void {
    this.link.settle(this, gen, outcome, outcome === 'failure' ? this.openMs(this.fleet.openings + 1, error) : 0)
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
    this.everIsolated = true
    this.link.isolate(this, ++this.holds)
    let disposed = false
    return {
      dispose: () => {
        if (disposed) return
        disposed = true
        this.link.isolate(this, --this.holds)
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
    if (next.epoch === current.epoch && next.gen <= current.gen) return
    this.fleet = next
    this.onChange()
  }

  /** Whether Redis is followed changed: the state this instance applies may have. */
  changed (): void {
    this.onChange()
  }

  /** A neutral trial freed a slot of generation `gen`: ask again. */
  slotFreed (gen: number, epoch: string): void {
    if (gen === this.fullGen && epoch === this.fleet.epoch) this.fullGen = -1
  }

  private dropPending (gen: number): void {
    this.pendingGen = gen
    this.pendingCalls = 0
    this.pendingFailures = 0
  }
}
