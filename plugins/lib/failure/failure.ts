/**
 * PostgreSQL SQLSTATE classes of errors caused by the statement or its data,
 * not by the server: 22 data exception (a value out of range, bad text for an
 * integer), 23 integrity constraint violation, 42 syntax error or access rule
 * violation (undefined table or column, ...).
 */
const REQUEST_SQLSTATE_CLASSES = new Set(['22', '23', '42'])

/** 4xx statuses that say "try again later" rather than "this request is wrong". */
const TRY_AGAIN_STATUSES = new Set([408, 429])

/**
 * Whether an error was caused by the request rather than by a dependency
 * failing: a `statusCode` (or `status`) from 400 to 499 other than 408 and
 * 429, or a PostgreSQL SQLSTATE of class 22, 23 or 42. Such errors are
 * answers, not outages: the breaker never counts them, the retry never
 * repeats them, the fallback never papers over them. The one rule every part
 * of the suite shares.
 */
export function isCausedByRequest (error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false
  const { statusCode, status, code } = error as { statusCode?: unknown, status?: unknown, code?: unknown }
  const httpStatus = typeof statusCode === 'number' ? statusCode : status
  if (typeof httpStatus === 'number') return httpStatus >= 400 && httpStatus < 500 && !TRY_AGAIN_STATUSES.has(httpStatus)
  // A five-character code is a PostgreSQL SQLSTATE; its first two characters are its class.
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && REQUEST_SQLSTATE_CLASSES.has(code.slice(0, 2))
}

/**
 * Whether an error is the dependency's fault: everything but what
 * {@link isCausedByRequest} calls the request's. The breaker's default
 * `isFailure`; the fallback's test for errors worth falling back from.
 */
export function isServerFailure (error: unknown): boolean {
  return !isCausedByRequest(error)
}
