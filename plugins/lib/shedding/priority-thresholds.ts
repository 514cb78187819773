import type { OptionReader } from '../plugin/options.js'

/** How willingly a route's requests are refused under load. */
export type ShedPriority = 'critical' | 'normal' | 'sheddable'

/** Every priority, in the order option messages list them. */
export const SHED_PRIORITIES: readonly ShedPriority[] = ['critical', 'normal', 'sheddable']

/** Share of the limit up to which each priority is admitted, each from 0 to 1. */
export type PriorityShares = Record<ShedPriority, number>

/**
 * The default shares: sheddable requests are refused from 80 % of the limit,
 * normal ones from 95 %, so critical ones keep the last 5 % to themselves.
 */
export const DEFAULT_PRIORITY_SHARES: Readonly<PriorityShares> = { sheddable: 0.8, normal: 0.95, critical: 1 }

/**
 * Reads `priorityShares`: any of the three priorities, each from 0 to 1,
 * ordered sheddable <= normal <= critical (a sheddable request admitted where a
 * normal one is refused would turn the priorities upside down).
 */
export function readPriorityShares (read: OptionReader, value: unknown): PriorityShares {
  const given = read.object<PriorityShares>('priorityShares', value, SHED_PRIORITIES)
  const shares = {} as PriorityShares
  for (const priority of SHED_PRIORITIES) {
    shares[priority] = read.number(`priorityShares.${priority}`, given[priority], DEFAULT_PRIORITY_SHARES[priority], { min: 0, max: 1 })
  }
  if (!(shares.sheddable <= shares.normal && shares.normal <= shares.critical)) {
    throw read.fail('priorityShares', 'ordered sheddable <= normal <= critical', value)
  }
  return shares
}

/**
 * Requests in flight from which each priority is refused under `limit`:
 * its share of the limit, rounded down, but at least one slot for any
 * non-zero share, so that small limits still admit every priority.
 */
export function priorityThresholds (shares: PriorityShares, limit: number): PriorityShares {
  const thresholds = {} as PriorityShares
  for (const priority of SHED_PRIORITIES) {
    thresholds[priority] = shares[priority] === 0 ? 0 : Math.max(1, Math.floor(shares[priority] * limit))
  }
  return thresholds
}
