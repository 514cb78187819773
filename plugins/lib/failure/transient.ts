import { isTaskCancelledError } from 'cockatiel'
import { isCircuitOpenError, isFeatureDisabledError, isOverloadedError, isRetryExhaustedError, isTimeoutError } from '../../errors.js'
import { isCausedByRequest } from './failure.js'

/** Node.js network error codes worth another try. */
const NETWORK_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN'])

/**
 * PostgreSQL SQLSTATEs worth another try besides class 08 (connection exception):
 * serialization failure, deadlock, too many connections, admin/crash shutdown,
 * cannot connect now.
 */
const POSTGRES_CODES = new Set(['40001', '40P01', '53300', '57P01', '57P02', '57P03'])

/** HTTP statuses that say "try again later". */
const HTTP_STATUSES = new Set([408, 429, 502, 503, 504])

/**
 * Connection failures that node-postgres and ioredis report with a message only
 * (no code). Matched on the start of the message.
 */
const CONNECTION_MESSAGES = [
  // node-postgres
  'Connection terminated',
  'Client has encountered a connection error and is not queryable',
  'timeout exceeded when trying to connect',
  // ioredis
  'Connection is closed.',
  'Command aborted due to connection close',
  "Stream isn't writeable",
  'Socket timeout'
]

/**
 * The default `isRetryable` of the retry plugin: true only for errors judged
 * transient. Never for our own refusals (open circuit, spent retries, disabled
 * feature, overload), never for an error caused by the request (see
 * `isCausedByRequest`: other 4xx, PostgreSQL classes 22, 23 and 42), and never
 * for an unknown error.
 */
export function isTransientError (error: unknown): boolean {
  if (typeof error !== 'object' || error === null || isCausedByRequest(error)) return false
  if (isCircuitOpenError(error) || isRetryExhaustedError(error) || isFeatureDisabledError(error) || isOverloadedError(error)) return false
  if (isTimeoutError(error) || isTaskCancelledError(error)) return true
  const { code, statusCode, status, name, message } = error as { code?: unknown, statusCode?: unknown, status?: unknown, name?: unknown, message?: unknown }
  if (typeof code === 'string') {
    if (NETWORK_CODES.has(code)) return true
    // A five-character code is a PostgreSQL SQLSTATE.
    if (/^[0-9A-Z]{5}$/.test(code)) return code.startsWith('08') || POSTGRES_CODES.has(code)
  }
  const httpStatus = typeof statusCode === 'number' ? statusCode : status
  if (typeof httpStatus === 'number') return HTTP_STATUSES.has(httpStatus)
  if (name === 'MaxRetriesPerRequestError') return true
  return typeof message === 'string' && CONNECTION_MESSAGES.some((start) => message.startsWith(start))
}
