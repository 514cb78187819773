/**
 * Whether an error is the dependency's fault: client-type errors (a
 * `statusCode` or `status` below 500: validation, not found) are answers, not
 * outages. The breaker's default `isFailure`; the fallback's test for errors
 * worth falling back from.
 */
export function isServerFailure (error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return true
  const { statusCode, status } = error as { statusCode?: unknown, status?: unknown }
  const code = typeof statusCode === 'number' ? statusCode : status
  return !(typeof code === 'number' && code < 500)
}
