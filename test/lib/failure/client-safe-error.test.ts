/**
 * What the route pipeline tells a client when a dependency fails: a 503 with
 * Retry-After, never the driver's message, host or port.
 */
import fastifyPostgres from '@fastify/postgres'
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import { createServer } from 'node:net'
import { test } from 'tap'
import resilience from '../../../plugins/index.js'
import type { ResilienceOptions } from '../../../plugins/resilience.js'
import { isRetryExhaustedError } from '../../../plugins/errors.js'
import { useFakeClock } from '../../fixtures/clock.js'
import { testApp } from '../../fixtures/app.js'
import type { Teardown } from '../../fixtures/app.js'

/** A loopback port nothing listens on: connecting to it is refused. */
async function closedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

async function build (t: Teardown, routes: (app: FastifyInstance) => void, options: ResilienceOptions = {}): Promise<FastifyInstance> {
  return await testApp(t, async (app) => {
    await app.register(resilience, { metrics: false, retry: { jitter: 'none', initialDelayMs: 1, budget: false }, ...options })
    routes(app)
  })
}

test('a PostgreSQL that refuses connections: 503 with Retry-After, and no host, port or driver message in the body', async (t) => {
  const port = await closedPort()
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyPostgres, { connectionString: `postgres://app@127.0.0.1:${port}/players`, connectionTimeoutMillis: 2000 })
  await app.register(resilience, { metrics: false, retry: { jitter: 'none', initialDelayMs: 1, budget: false } })
  const write = { breaker: { name: 'database', minimumCalls: 100 } }
  app.put('/retried', { config: { resilience: { ...write, retry: { maxRetries: 2 } } } }, async () => await app.pg.query('SELECT 1'))
  app.put('/once', { config: { resilience: write } }, async () => await app.pg.query('SELECT 1'))
  app.put('/unprotected', async () => await app.pg.query('SELECT 1'))
  await app.ready()

  const unprotected = await app.inject({ method: 'PUT', url: '/unprotected' })
  t.equal(unprotected.statusCode, 500, 'without the pipeline, Fastify answers as it always does')
  t.match(unprotected.body, String(port), '...with the driver message: what the pipeline must not let through')

  const retried = await app.inject({ method: 'PUT', url: '/retried' })
  t.equal(retried.statusCode, 503)
  t.equal(retried.json().code, 'FST_RESILIENCE_RETRY_EXHAUSTED')
  t.equal(retried.headers['retry-after'], '5')

  const once = await app.inject({ method: 'PUT', url: '/once' })
  t.equal(once.statusCode, 503)
  t.same(once.json(), { statusCode: 503, code: 'FST_RESILIENCE_DEPENDENCY_UNAVAILABLE', error: 'Service Unavailable', message: 'a dependency is unavailable, try again later' })
  t.equal(once.headers['retry-after'], '5')

  for (const response of [retried, once]) {
    t.notMatch(response.body, String(port), 'no port')
    t.notMatch(response.body, '127.0.0.1', 'no host')
    t.notMatch(response.body, 'ECONNREFUSED', 'no driver message')
  }
})

test('a retry budget that is spent hands the raw error on; the pipeline still answers 503 with Retry-After', async (t) => {
  const refused = (): Error => Object.assign(new Error('connect ECONNREFUSED 10.0.0.7:5432'), { code: 'ECONNREFUSED' })
  const app = await build(t, (instance) => {
    instance.get('/budgeted', { config: { resilience: { retry: { maxRetries: 2, budget: { ratio: 0.1, minRetriesPerSecond: 0 } } } } }, async () => { throw refused() })
  }, { retry: { jitter: 'none', initialDelayMs: 1 } })
  const response = await app.inject('/budgeted')
  t.equal(response.statusCode, 503)
  t.equal(response.json().code, 'FST_RESILIENCE_DEPENDENCY_UNAVAILABLE')
  t.equal(response.headers['retry-after'], '5')
  t.notMatch(response.body, '10.0.0.7')
})

test('an open breaker\'s Retry-After is the time left until half-open', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const app = await build(t, (instance) => {
    instance.get('/db', { config: { resilience: { breaker: 'db' } } }, async () => { throw Object.assign(new Error('Connection terminated unexpectedly'), {}) })
  })
  for (let i = 0; i < 2; i++) t.equal((await app.inject('/db')).headers['retry-after'], '5', 'closed: the default')
  t.equal((await app.inject('/db')).headers['retry-after'], '30', 'the failure that opens it already tells the whole open period')
  t.equal(app.breaker('db').state, 'open')
  clock.tick(12_000)
  const refused = await app.inject('/db')
  t.equal(refused.json().code, 'FST_RESILIENCE_CIRCUIT_OPEN')
  t.equal(refused.headers['retry-after'], '18')
})

test('a per-attempt timeout answers 503 with Retry-After', async (t) => {
  const app = await build(t, (instance) => {
    instance.get('/slow', { config: { resilience: { timeoutMs: 20 } } }, async (request) => {
      await new Promise((resolve) => request.attemptSignal.addEventListener('abort', resolve))
      return 'late'
    })
  })
  const response = await app.inject('/slow')
  t.equal(response.statusCode, 503)
  t.equal(response.json().code, 'FST_RESILIENCE_TIMEOUT')
  t.equal(response.headers['retry-after'], '5')
})

test('errors that are no dependency failure pass unchanged: client errors, own statuses, own Retry-After, bugs', async (t) => {
  const app = await build(t, (instance) => {
    // The pipeline alone (a generous per-attempt timeout): retries and a breaker would change these errors.
    const protect = { config: { resilience: { timeoutMs: 60_000 } } }
    instance.get('/missing', protect, async () => { throw Object.assign(new Error('player 7 not found'), { statusCode: 404 }) })
    instance.get('/bad-gateway', protect, async () => { throw Object.assign(new Error('upstream answered 502'), { statusCode: 502 }) })
    instance.get('/own-retry-after', protect, async () => { throw Object.assign(new Error('maintenance'), { statusCode: 503, headers: { 'retry-after': '120' } }) })
    instance.get('/bug', protect, async () => { throw new TypeError('cannot read properties of undefined') })
    // eslint-disable-next-line no-throw-literal
    instance.get('/thrown-string', protect, async () => { throw 'ECONNREFUSED' })
    instance.get('/status-503', protect, async () => { throw Object.assign(new Error('busy'), { status: 503 }) })
  })
  const missing = await app.inject('/missing')
  t.equal(missing.statusCode, 404)
  t.equal(missing.json().message, 'player 7 not found')
  t.equal(missing.headers['retry-after'], undefined)

  const badGateway = await app.inject('/bad-gateway')
  t.equal(badGateway.statusCode, 502, 'an error with an HTTP status of its own keeps it')
  t.equal(badGateway.headers['retry-after'], undefined)

  t.equal((await app.inject('/own-retry-after')).headers['retry-after'], '120')

  const bug = await app.inject('/bug')
  t.equal(bug.statusCode, 500, 'a bug is not a dependency failure: the app\'s error handler decides what to show')
  t.equal((await app.inject('/thrown-string')).statusCode, 500, 'a thrown non-object is left to the error handler')
  const status503 = await app.inject('/status-503')
  t.equal(status503.statusCode, 503, 'a `status` counts like a `statusCode`')
  t.equal(status503.headers['retry-after'], '5')
})

test('app.retry\'s RETRY_EXHAUSTED carries Retry-After when a handler throws it', async (t) => {
  const app = await build(t, (instance) => {
    instance.get('/direct', async () => await instance.retry(async () => { throw Object.assign(new Error('reset'), { code: 'ECONNRESET' }) }, { maxRetries: 1 }))
  })
  const error = await app.retry(async () => { throw Object.assign(new Error('reset'), { code: 'ECONNRESET' }) }, { maxRetries: 1 }).catch((e: unknown) => e)
  t.ok(isRetryExhaustedError(error))
  const response = await app.inject('/direct')
  t.equal(response.statusCode, 503)
  t.equal(response.headers['retry-after'], '5')
})
