import { priorityThresholds } from './priority-thresholds.js'
import type { PriorityShares, ShedPriority } from './priority-thresholds.js'
import type { EventLoopPressure } from './event-loop-pressure.js'

/** Why a request was refused: the `reason` label of `requests_shedded_total`. */
export type ShedReason = 'concurrency' | 'priority' | 'event_loop_delay' | 'event_loop_utilization'

/**
 * Who is admitted now: the requests in flight against the live limit and
 * each priority's share of it, then the event loop's pressure for all but
 * critical requests. Admitting a request is a few comparisons of stored
 * numbers; the thresholds are recomputed only when the limit moves.
 */
export class Admission {
  /** Requests admitted and not finished yet; the caller counts them in and out. */
  inFlight = 0
  private currentLimit = 0
  private thresholds!: PriorityShares
  private readonly shares: PriorityShares
  private readonly eventLoop: Pick<EventLoopPressure, 'pressure'> | undefined

  /**
   * @param shares - share of the limit up to which each priority is admitted
   * @param limit - the limit to start with
   * @param eventLoop - the event loop's pressure, when it is watched
   */
  constructor (shares: PriorityShares, limit: number, eventLoop?: Pick<EventLoopPressure, 'pressure'>) {
    this.shares = shares
    this.eventLoop = eventLoop
    this.limit = limit
  }

  /** Requests in flight at most now. */
  get limit (): number {
    return this.currentLimit
  }

  set limit (limit: number) {
    this.currentLimit = limit
    this.thresholds = priorityThresholds(this.shares, limit)
  }

  /** Why a request of `priority` would be refused now, or undefined when it would be admitted. */
  refusal (priority: ShedPriority): ShedReason | undefined {
    if (this.inFlight >= this.currentLimit) return 'concurrency'
    if (this.inFlight >= this.thresholds[priority]) return 'priority'
    // Critical requests pass process pressure: they are what the service is kept up for.
    return priority === 'critical' ? undefined : this.eventLoop?.pressure
  }
}
