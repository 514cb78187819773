import createError from '@fastify/error'

/**
 * Errors that fastify-resilience sends to clients. Each is an `@fastify/error`
 * constructor, so a thrown instance becomes Fastify's usual JSON error reply
 * with its status code, and its `headers` (such as `Retry-After`) are sent too.
 *
 * The `is...Error` guards recognise errors made by another copy of this package
 * (two versions in one `node_modules`): `@fastify/error` marks every instance
 * with a process-wide `Symbol.for('fastify-error <CODE>')`, which is what
 * `instanceof` checks here, so the class identity of this copy does not matter.
 */

/** A call was refused because its circuit breaker is open (or isolated, or half-open and full). */
export const CircuitOpenError = createError<'FST_RESILIENCE_CIRCUIT_OPEN', 503, [name: string]>(
  'FST_RESILIENCE_CIRCUIT_OPEN', 'circuit "%s" is open, try again later', 503)

const RetryExhaustedBase = createError<'FST_RESILIENCE_RETRY_EXHAUSTED', 503, [operation: string, attempts: number, options?: { cause: unknown }]>(
  'FST_RESILIENCE_RETRY_EXHAUSTED', 'operation "%s" failed after %d attempts', 503)

/** Every attempt of a retried operation failed; `cause` is the last error. */
export class RetryExhaustedError extends RetryExhaustedBase {
  /** Attempts made, the first call included. */
  readonly attempts: number

  constructor (operation: string, attempts: number, options?: { cause: unknown }) {
    // @fastify/error formats every argument into the message: pass options only when given.
    super(...(options === undefined ? [operation, attempts] : [operation, attempts, options]) as [string, number])
    this.attempts = attempts
  }
}

/** The feature flag guarding a route or call is disabled. */
export const FeatureDisabledError = createError<'FST_RESILIENCE_FEATURE_DISABLED', 503, [flag: string]>(
  'FST_RESILIENCE_FEATURE_DISABLED', 'feature "%s" is disabled', 503)

/** A flag change could not be saved because the shared flag store (Redis) is unreachable. */
export const FlagStoreUnavailableError = createError<'FST_RESILIENCE_FLAG_STORE_UNAVAILABLE', 503, [flag: string, reason: string, options?: { cause: unknown }]>(
  'FST_RESILIENCE_FLAG_STORE_UNAVAILABLE', 'cannot change feature "%s": the flag store is unavailable (%s)', 503)

/** The load shedder refused a request. */
export const OverloadedError = createError<'FST_RESILIENCE_OVERLOADED', 503, []>(
  'FST_RESILIENCE_OVERLOADED', 'service overloaded, try again later', 503)

/** A per-attempt timeout (`timeoutMs`) cut an operation short. */
export const TimeoutError = createError<'FST_RESILIENCE_TIMEOUT', 503, [timeoutMs: number]>(
  'FST_RESILIENCE_TIMEOUT', 'operation timed out after %d ms', 503)

/**
 * A dependency failed in a way worth trying again later (a refused or lost
 * connection, a server shutting down): the route pipeline's answer for such an
 * error, which would otherwise reach the client with its driver message. `cause`
 * is the original error, for logs.
 */
export const DependencyUnavailableError = createError<'FST_RESILIENCE_DEPENDENCY_UNAVAILABLE', 503, [options?: { cause: unknown }]>(
  'FST_RESILIENCE_DEPENDENCY_UNAVAILABLE', 'a dependency is unavailable, try again later', 503)

/** A protected endpoint (such as `/metrics` with a token) was called without valid credentials. */
export const UnauthorizedError = createError<'FST_RESILIENCE_UNAUTHORIZED', 401, []>(
  'FST_RESILIENCE_UNAUTHORIZED', 'missing or invalid bearer token', 401)

/** True for `FST_RESILIENCE_CIRCUIT_OPEN` errors, from any copy of this package. */
export function isCircuitOpenError (error: unknown): error is InstanceType<typeof CircuitOpenError> {
  return error instanceof CircuitOpenError
}

/** True for `FST_RESILIENCE_RETRY_EXHAUSTED` errors, from any copy of this package. */
export function isRetryExhaustedError (error: unknown): error is InstanceType<typeof RetryExhaustedError> {
  return error instanceof RetryExhaustedError
}

/** True for `FST_RESILIENCE_FEATURE_DISABLED` errors, from any copy of this package. */
export function isFeatureDisabledError (error: unknown): error is InstanceType<typeof FeatureDisabledError> {
  return error instanceof FeatureDisabledError
}

/** True for `FST_RESILIENCE_FLAG_STORE_UNAVAILABLE` errors, from any copy of this package. */
export function isFlagStoreUnavailableError (error: unknown): error is InstanceType<typeof FlagStoreUnavailableError> {
  return error instanceof FlagStoreUnavailableError
}

/** True for `FST_RESILIENCE_OVERLOADED` errors, from any copy of this package. */
export function isOverloadedError (error: unknown): error is InstanceType<typeof OverloadedError> {
  return error instanceof OverloadedError
}

/** True for `FST_RESILIENCE_TIMEOUT` errors, from any copy of this package. */
export function isTimeoutError (error: unknown): error is InstanceType<typeof TimeoutError> {
  return error instanceof TimeoutError
}

/** True for `FST_RESILIENCE_DEPENDENCY_UNAVAILABLE` errors, from any copy of this package. */
export function isDependencyUnavailableError (error: unknown): error is InstanceType<typeof DependencyUnavailableError> {
  return error instanceof DependencyUnavailableError
}

/** True for `FST_RESILIENCE_UNAUTHORIZED` errors, from any copy of this package. */
export function isUnauthorizedError (error: unknown): error is InstanceType<typeof UnauthorizedError> {
  return error instanceof UnauthorizedError
}

/**
 * Sets the `Retry-After` header (whole seconds, at least 1) that Fastify sends
 * with the error, and returns the error.
 */
export function withRetryAfter<E extends Error> (error: E, retryAfterMs: number): E & { headers: Record<string, string> } {
  const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000))
  const target = error as E & { headers?: Record<string, string> }
  target.headers = { ...target.headers, 'retry-after': String(seconds) }
  return target as E & { headers: Record<string, string> }
}
