import { isPlainObject } from '../plugin/options.js'
import type { OptionReader } from '../plugin/options.js'
import { SHED_PRIORITIES } from './priority-thresholds.js'
import type { ShedPriority } from './priority-thresholds.js'

/** A route's priority, or false for a route that is never shed nor counted (`shed: false`). */
export type RoutePriority = ShedPriority | false

/** Where a route's priority is kept on its `config`, decided once in `onRoute`. */
export const kPriority = Symbol('fastify-resilience.shed-priority')

/** A route's `config` as the load shedder sees it. */
export interface PriorityConfig {
  resilience?: unknown
  [kPriority]?: RoutePriority
}

/**
 * Reads a route's `config.resilience.shed` when the route is added: `{ priority }`
 * (`'normal'` when left out) or `false`; anything else throws, naming the
 * route through `read`.
 */
export function readRoutePriority (read: OptionReader, shed: unknown): RoutePriority {
  if (shed === undefined) return 'normal'
  if (shed === false) return false
  if (!isPlainObject(shed)) throw read.fail('config.resilience.shed', '{ priority } or false', shed)
  const opts = read.object<{ priority?: ShedPriority }>('config.resilience.shed', shed, ['priority'])
  return read.oneOf('config.resilience.shed.priority', opts.priority, 'normal', SHED_PRIORITIES)
}

/**
 * The priority of a route registered before the plugin (e.g. /metrics), whose
 * `onRoute` the plugin never saw: read on its first request, taking `'normal'`
 * for anything unreadable instead of throwing (a request is no place to report
 * a configuration mistake), and remembered on its `config`.
 */
export function priorityOfEarlierRoute (config: PriorityConfig): RoutePriority {
  const shed = (config.resilience as { shed?: { priority?: unknown } | false } | undefined)?.shed
  const priority = shed === false ? false : SHED_PRIORITIES.find((p) => p === shed?.priority) ?? 'normal'
  config[kPriority] = priority
  return priority
}
