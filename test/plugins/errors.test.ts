import createError from '@fastify/error'
import Fastify from 'fastify'
import { test } from 'tap'
import {
  CircuitOpenError, DependencyUnavailableError, FeatureDisabledError, FlagStoreUnavailableError, OverloadedError, RetryExhaustedError, TimeoutError, UnauthorizedError,
  isCircuitOpenError, isDependencyUnavailableError, isFeatureDisabledError, isFlagStoreUnavailableError, isOverloadedError, isRetryExhaustedError, isTimeoutError, isUnauthorizedError,
  withRetryAfter
} from '../../plugins/errors.js'

const errors = [
  { make: () => new CircuitOpenError('database'), guard: isCircuitOpenError, code: 'FST_RESILIENCE_CIRCUIT_OPEN', status: 503, message: 'circuit "database" is open, try again later' },
  { make: () => new RetryExhaustedError('player_lookup', 4), guard: isRetryExhaustedError, code: 'FST_RESILIENCE_RETRY_EXHAUSTED', status: 503, message: 'operation "player_lookup" failed after 4 attempts' },
  { make: () => new FeatureDisabledError('player_lookup'), guard: isFeatureDisabledError, code: 'FST_RESILIENCE_FEATURE_DISABLED', status: 503, message: 'feature "player_lookup" is disabled' },
  { make: () => new FlagStoreUnavailableError('player_lookup', 'Redis status "reconnecting"'), guard: isFlagStoreUnavailableError, code: 'FST_RESILIENCE_FLAG_STORE_UNAVAILABLE', status: 503, message: 'cannot change feature "player_lookup": the flag store is unavailable (Redis status "reconnecting")' },
  { make: () => new OverloadedError(), guard: isOverloadedError, code: 'FST_RESILIENCE_OVERLOADED', status: 503, message: 'service overloaded, try again later' },
  { make: () => new TimeoutError(2000), guard: isTimeoutError, code: 'FST_RESILIENCE_TIMEOUT', status: 503, message: 'operation timed out after 2000 ms' },
  { make: () => new DependencyUnavailableError({ cause: new Error('connect ECONNREFUSED 127.0.0.1:5432') }), guard: isDependencyUnavailableError, code: 'FST_RESILIENCE_DEPENDENCY_UNAVAILABLE', status: 503, message: 'a dependency is unavailable, try again later' },
  { make: () => new UnauthorizedError(), guard: isUnauthorizedError, code: 'FST_RESILIENCE_UNAUTHORIZED', status: 401, message: 'missing or invalid bearer token' }
]

test('each error carries its code, status and message, and becomes Fastify\'s JSON error reply', async (t) => {
  for (const { make, code, status, message } of errors) {
    const error = make()
    t.equal(error.code, code)
    t.equal(error.statusCode, status)
    t.equal(error.message, message)

    const app = Fastify()
    t.teardown(() => app.close())
    app.get('/', async () => { throw make() })
    const response = await app.inject('/')
    t.equal(response.statusCode, status, code)
    t.same(response.json(), { statusCode: status, code, error: status === 503 ? 'Service Unavailable' : 'Unauthorized', message })
  }
})

test('each guard recognises only its own error, also when another copy of the package made it', async (t) => {
  for (const { make, guard, code } of errors) {
    // A second copy of fastify-resilience creates its own constructor with the same code.
    const OtherCopy = createError(code, 'made by another copy', 503)
    t.equal(guard(make()), true, `${code} from this copy`)
    t.equal(guard(new OtherCopy()), true, `${code} from another copy`)
    for (const other of errors) {
      if (other.code !== code) t.equal(guard(other.make()), false, `${code} guard refuses ${other.code}`)
    }
    t.equal(guard(Object.assign(new Error('look-alike'), { code })), false, 'a plain Error with the same code is not ours')
    t.equal(guard(undefined), false)
    t.equal(guard(null), false)
    t.equal(guard('FST_RESILIENCE'), false)
  }
})

test('RetryExhaustedError keeps the last error as its cause', async (t) => {
  const last = new Error('connection reset')
  const error = new RetryExhaustedError('player_lookup', 3, { cause: last })
  t.equal(error.cause, last)
  t.equal(error.message, 'operation "player_lookup" failed after 3 attempts')
  const attempts: number = error.attempts
  t.equal(attempts, 3, 'attempts is part of its type and set by the constructor')
  t.equal(new RetryExhaustedError('player_lookup', 2).message, 'operation "player_lookup" failed after 2 attempts', 'no cause, no trailing argument')
})

test('withRetryAfter sends Retry-After in whole seconds, rounded up and at least 1', async (t) => {
  t.same(withRetryAfter(new OverloadedError(), 1500).headers, { 'retry-after': '2' })
  t.same(withRetryAfter(new OverloadedError(), 0).headers, { 'retry-after': '1' })
  t.same(withRetryAfter(new OverloadedError(), 30_000).headers, { 'retry-after': '30' })
  const kept = withRetryAfter(Object.assign(new CircuitOpenError('db'), { headers: { 'x-circuit': 'db' } }), 4001)
  t.same(kept.headers, { 'x-circuit': 'db', 'retry-after': '5' })

  const app = Fastify()
  t.teardown(() => app.close())
  app.get('/', async () => { throw withRetryAfter(new CircuitOpenError('database'), 12_300) })
  const response = await app.inject('/')
  t.equal(response.statusCode, 503)
  t.equal(response.headers['retry-after'], '13')
  t.equal(response.json().code, 'FST_RESILIENCE_CIRCUIT_OPEN')
})
