import { DependencyUnavailableError, withRetryAfter } from '../../errors.js'
import { isTransientError } from './transient.js'

/**
 * `Retry-After` of a dependency failure when nothing knows better (an open
 * breaker does): long enough that clients do not pile onto a dependency that
 * is down, as the load shedder's refusals do.
 */
export const DEPENDENCY_RETRY_AFTER_MS = 5_000

/**
 * What a client may be told of an error that got through the route pipeline:
 * a transient dependency failure without an HTTP status of its own (a refused
 * or lost connection, a server shutting down) becomes 503
 * `FST_RESILIENCE_DEPENDENCY_UNAVAILABLE`, its driver message (hosts, ports)
 * kept as `cause` for the logs only; any 503 gets a `Retry-After` if it has
 * none. Everything else is left as it is.
 */
export function clientSafeError (error: unknown, retryAfterMs: number): unknown {
  if (typeof error !== 'object' || error === null) return error
  const { statusCode, status, headers } = error as { statusCode?: unknown, status?: unknown, headers?: Record<string, string> }
  const httpStatus = statusCode ?? status
  if (httpStatus === undefined) {
    return isTransientError(error) ? withRetryAfter(new DependencyUnavailableError({ cause: error }), retryAfterMs) : error
  }
  if (httpStatus === 503 && headers?.['retry-after'] === undefined) return withRetryAfter(error as Error, retryAfterMs)
  return error
}
