import type { ServerResponse } from 'node:http'
import { systemClock } from '../time/clock.js'
import type { Clock } from '../time/clock.js'
import { AdaptiveLimit } from './adaptive-limit.js'
import type { AdaptiveLimitSettings } from './adaptive-limit.js'
import type { Admission } from './admission.js'
import { LimitMoves } from './limit-moves.js'
import type { LimitMove } from './limit-moves.js'

/** When a response's request was admitted, and how many were in flight then. */
const kAdmittedAtMs = Symbol('fastify-resilience.admitted-at')
const kAdmittedInFlight = Symbol('fastify-resilience.admitted-in-flight')

interface AdmittedResponse extends ServerResponse { [kAdmittedAtMs]: number, [kAdmittedInFlight]: number }

/** How long a halving or doubling of the limit may take to be reported, and how often at most. */
export const LIMIT_MOVE_PERIOD_MS = 10_000

/**
 * Teaches an {@link AdaptiveLimit} from the responses of admitted requests
 * and keeps the {@link Admission}'s limit in step with it; reports when the
 * limit halves or doubles (see {@link LimitMoves}).
 */
export class LimitLearner {
  private readonly admission: Admission
  private readonly adaptive: AdaptiveLimit
  private readonly moves: LimitMoves
  private readonly onMove: (move: LimitMove) => void
  private readonly clock: Clock

  /**
   * Sets the admission's limit to where the adaptive limit starts (`minLimit`,
   * to measure the baseline).
   * @param onMove - told of each move worth reporting
   */
  constructor (admission: Admission, settings: AdaptiveLimitSettings, onMove: (move: LimitMove) => void, clock: Clock = systemClock) {
    this.admission = admission
    this.onMove = onMove
    this.clock = clock
    this.adaptive = new AdaptiveLimit(settings, clock.now)
    // Moves are measured from the limit the first baseline window leads to, not from the probe's dip.
    this.moves = new LimitMoves(Math.min(settings.maxLimit, Math.max(settings.minLimit, settings.initialLimit)), LIMIT_MOVE_PERIOD_MS, clock.now)
    admission.limit = this.adaptive.limit
  }

  /** A request was admitted with `inFlight` requests in flight (itself included); `response` is its reply. */
  admitted (response: ServerResponse, inFlight: number): void {
    const admitted = response as AdmittedResponse
    admitted[kAdmittedAtMs] = this.clock.now()
    admitted[kAdmittedInFlight] = inFlight
  }

  /** The response of an admitted request closed: after the reply, or when the client went away. */
  closed (response: ServerResponse): void {
    const admitted = response as AdmittedResponse
    // Only complete, successful responses teach the limit: a failure is often
    // fast, and fast failures taken as capacity would collapse it.
    if (!this.adaptive.record(admitted[kAdmittedAtMs], admitted[kAdmittedInFlight], admitted.writableFinished && admitted.statusCode < 400)) return
    this.admission.limit = this.adaptive.limit
    // The probes' dips to minLimit are routine, not news.
    if (this.adaptive.probing) return
    const move = this.moves.observe(this.adaptive.limit)
    if (move !== undefined) this.onMove(move)
  }
}
