import fastifyPostgres from '@fastify/postgres'
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import { TaskCancelledError } from 'cockatiel'
import { test } from 'tap'
import { breaker, metrics, retry } from '../../plugins/index.js'
import type { RetryPluginOptions } from '../../plugins/retry.js'
import { CircuitOpenError, FeatureDisabledError, OverloadedError, RetryExhaustedError, TimeoutError, isRetryExhaustedError } from '../../plugins/errors.js'
import { createBackoff } from '../../plugins/lib/retry/backoff.js'
import { isTransientError } from '../../plugins/lib/failure/transient.js'
import { useFakeClock } from '../fixtures/clock.js'
import { testDatabaseUrl } from '../fixtures/services.js'
import { within } from '../fixtures/wait.js'
import type { Teardown } from '../fixtures/app.js'

async function build (t: Teardown, options: RetryPluginOptions = {}): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(metrics)
  await app.register(breaker)
  await app.register(retry, options)
  await app.ready()
  return app
}

const reset = (): Error => Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })

async function metricValue (app: FastifyInstance, line: RegExp): Promise<number | undefined> {
  const body = (await app.inject('/metrics')).body
  const match = body.split('\n').find((l) => line.test(l))
  return match === undefined ? undefined : Number(match.split(' ').at(-1))
}

test('with jitter none the delays are 100, 200, 400 ms ... capped at 10 s', async (t) => {
  const clock = useFakeClock(t)
  const app = await build(t, { jitter: 'none', maxRetries: 10, budget: false })
  const startedAt: number[] = []
  const outcome = app.retry(async () => {
    startedAt.push(Date.now())
    throw reset()
  }).catch((error: unknown) => error)
  await clock.runAllAsync()
  const error = await outcome
  const delays = startedAt.slice(1).map((at, i) => at - (startedAt[i] as number))
  t.same(delays, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000])
  t.ok(isRetryExhaustedError(error))
})

test('multiplier and initialDelayMs shape the sequence', async (t) => {
  const clock = useFakeClock(t)
  const app = await build(t, { jitter: 'none', budget: false })
  const startedAt: number[] = []
  const outcome = app.retry(async () => { startedAt.push(Date.now()); throw reset() }, { initialDelayMs: 50, multiplier: 3, maxRetries: 3 }).catch(() => {})
  await clock.runAllAsync()
  await outcome
  t.same(startedAt.slice(1).map((at, i) => at - (startedAt[i] as number)), [50, 150, 450])
})

/** f(t) = multiplier^t × tanh(√(4t)), the curve of decorrelated jitter (f(-1) = 0). */
const curve = (t: number, multiplier: number): number => t < 0 ? 0 : multiplier ** t * Math.tanh(Math.sqrt(4 * t))

test('decorrelated jitter keeps every delay within its bounds and under the cap, over many samples', async (t) => {
  const settings = { initialDelayMs: 100, multiplier: 2, maxDelayMs: 10_000, jitter: 'decorrelated' as const }
  const factory = createBackoff(settings)
  const attempts = 12
  const samples: number[][] = Array.from({ length: attempts }, () => [])
  let outOfBounds = 0
  for (let run = 0; run < 5000; run++) {
    let backoff = factory.next(undefined)
    for (let n = 0; n < attempts; n++) {
      if (n > 0) backoff = backoff.next(undefined)
      const delay = backoff.duration
      const upper = Math.min(settings.maxDelayMs, settings.initialDelayMs * (curve(n + 1, 2) - curve(n - 1, 2)) / 1.4)
      if (!(delay >= 0 && delay <= upper + 1e-9 && delay <= settings.maxDelayMs)) outOfBounds++
      samples[n]?.push(delay)
    }
  }
  t.equal(outOfBounds, 0, 'no delay outside [0, its bound] or above the cap')
  const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number
  const medians = samples.map(median)
  t.ok((medians[1] as number) < (medians[4] as number) && (medians[4] as number) < (medians[6] as number), `medians grow: ${medians.slice(0, 7).map(Math.round).join(', ')}`)
  t.equal(median(samples[attempts - 1] as number[]), 10_000, 'late attempts sit at the cap')
  t.ok(new Set(samples[2]).size > 1000, 'delays are spread, not constant')
})

test('full jitter draws each delay between 0 and the exponential delay', async (t) => {
  const factory = createBackoff({ initialDelayMs: 100, multiplier: 2, maxDelayMs: 1_000, jitter: 'full' })
  let outOfBounds = 0
  for (let run = 0; run < 2000; run++) {
    let backoff = factory.next(undefined)
    for (let n = 0; n < 8; n++) {
      if (n > 0) backoff = backoff.next(undefined)
      if (!(backoff.duration >= 0 && backoff.duration <= Math.min(1_000, 100 * 2 ** n))) outOfBounds++
    }
  }
  t.equal(outOfBounds, 0)
})

const pg = (code: string, message = 'postgres error'): Error => Object.assign(new Error(message), { code, severity: 'ERROR' })
const http = (statusCode: number): Error => Object.assign(new Error(`HTTP ${statusCode}`), { statusCode })

const classification: Array<[string, unknown, boolean]> = [
  ['our timeout', new TimeoutError(100), true],
  ['cockatiel TaskCancelledError', new TaskCancelledError(), true],
  ...['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN'].map((code): [string, unknown, boolean] =>
    [`Node ${code}`, Object.assign(new Error(code), { code }), true]),
  ...['08000', '08001', '08003', '08004', '08006', '08P01', '40001', '40P01', '53300', '57P01', '57P02', '57P03'].map((code): [string, unknown, boolean] =>
    [`PostgreSQL ${code}`, pg(code), true]),
  ['node-postgres connection terminated', new Error('Connection terminated unexpectedly'), true],
  ['node-postgres broken client', new Error('Client has encountered a connection error and is not queryable'), true],
  ['node-postgres pool connect timeout', new Error('timeout exceeded when trying to connect'), true],
  ['ioredis closed connection', new Error('Connection is closed.'), true],
  ['ioredis max retries per request', Object.assign(new Error('Reached the max retries per request limit'), { name: 'MaxRetriesPerRequestError' }), true],
  ['ioredis aborted command', new Error('Command aborted due to connection close'), true],
  ['ioredis offline queue off', new Error("Stream isn't writeable and enableOfflineQueue options is false"), true],
  ['ioredis socket timeout', new Error('Socket timeout. Expecting data, but didn\'t receive any in 100ms.'), true],
  ...[408, 429, 502, 503, 504].map((status): [string, unknown, boolean] => [`HTTP ${status}`, http(status), true]),
  ['HTTP 503 as "status"', Object.assign(new Error('x'), { status: 503 }), true],
  ['an open circuit', new CircuitOpenError('db'), false],
  ['spent retries (nested retry)', new RetryExhaustedError('inner', 3), false],
  ['a disabled feature', new FeatureDisabledError('x'), false],
  ['overload', new OverloadedError(), false],
  ...[400, 401, 403, 404, 409, 422].map((status): [string, unknown, boolean] => [`HTTP ${status}`, http(status), false]),
  ['HTTP 500', http(500), false],
  ['PostgreSQL unique violation 23505', pg('23505'), false],
  ['PostgreSQL invalid text 22P02', pg('22P02'), false],
  ['PostgreSQL undefined table 42P01', pg('42P01'), false],
  ['PostgreSQL division by zero 22012', pg('22012'), false],
  ['an unknown error', new Error('something else'), false],
  ['an unknown error code', Object.assign(new Error('x'), { code: 'ERR_SOMETHING' }), false],
  ['a thrown string', 'ECONNRESET', false],
  ['null', null, false]
]

test('the default classification retries transient errors only', async (t) => {
  for (const [description, error, retried] of classification) {
    t.equal(isTransientError(error), retried, `${description}: ${retried ? 'retried' : 'not retried'}`)
  }
})

test('the classification is what app.retry applies: transient errors retried, others thrown at once', async (t) => {
  const clock = useFakeClock(t)
  const app = await build(t, { jitter: 'none', maxRetries: 1, budget: false })
  for (const [description, error, retried] of classification) {
    let calls = 0
    const outcome = app.retry(async () => { calls++; throw error }).catch((e: unknown) => e)
    await clock.runAllAsync()
    const thrown = await outcome
    t.equal(calls, retried ? 2 : 1, description)
    if (retried) t.equal((thrown as Error).cause, error, `${description}: exhausted with the last error as cause`)
    else t.equal(thrown, error, `${description}: thrown unchanged`)
  }
})

test('a transient fault on the real PostgreSQL (backend killed mid-query) is retried to success', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyPostgres, { connectionString: testDatabaseUrl() })
  await app.register(retry, { jitter: 'none', initialDelayMs: 10 })
  await app.ready()

  const errors: unknown[] = []
  const clientErrors: unknown[] = []
  const answer = await app.retry(async ({ attempt }) => {
    const client = await app.pg.connect()
    // A killed backend also surfaces as an 'error' event on the checked-out client.
    const onClientError = (error: Error): void => { clientErrors.push(error) }
    client.on('error', onClientError)
    try {
      if (attempt === 0) {
        const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')
        // Settled into a value at once, so its rejection is never "unhandled" while we kill the backend.
        const slow = client.query('SELECT pg_sleep(30)').then(() => undefined, (error: unknown) => error)
        // Another connection kills this backend while its query runs.
        await app.pg.query('SELECT pg_terminate_backend($1)', [rows[0]?.pid])
        const killed = await slow
        if (killed !== undefined) throw killed
      }
      const { rows } = await client.query<{ answer: number }>('SELECT 6 * 7 AS answer')
      client.off('error', onClientError)
      client.release()
      return rows[0]?.answer
    } catch (error) {
      errors.push(error)
      client.release(error as Error)
      throw error
    }
  }, { operation: 'kill_test' })

  t.equal(answer, 42)
  t.equal(errors.length, 1, 'one attempt failed')
  t.equal((errors[0] as { code?: string }).code, '57P01', 'killed by pg_terminate_backend (admin shutdown)')
})

test('an abort during a backoff sleep rejects at once and calls nothing more', async (t) => {
  const clock = useFakeClock(t)
  const app = await build(t, { jitter: 'none', initialDelayMs: 1_000, budget: false })
  const controller = new AbortController()
  let calls = 0
  const outcome = app.retry(async () => { calls++; throw reset() }, { signal: controller.signal }).catch((e: unknown) => e)
  await clock.tickAsync(10) // the first attempt fails; the 1 s sleep begins
  t.equal(calls, 1)
  controller.abort(new Error('client went away'))
  t.match(await within('the retry to reject when its signal aborted mid-sleep (the clock stands still)', outcome), { message: 'client went away' }, 'rejected without the clock moving')
  await clock.tickAsync(60_000)
  t.equal(calls, 1, 'never called again')
  t.equal(clock.countTimers(), 0, 'the sleep timer was released')
})

test('an already aborted signal rejects before the first call', async (t) => {
  const app = await build(t)
  let calls = 0
  await t.rejects(app.retry(async () => { calls++ }, { signal: AbortSignal.abort(new Error('gone')) }), /gone/)
  t.equal(calls, 0)
})

test('an abort while the function runs rejects at once even if the function ignores it', async (t) => {
  const app = await build(t)
  const controller = new AbortController()
  const outcome = app.retry(async () => await new Promise(() => {}), { signal: controller.signal })
  controller.abort(new Error('stop'))
  await t.rejects(within('the retry to reject when its signal aborted while the function ignores it', outcome), /stop/)
})

test('spent retries throw FST_RESILIENCE_RETRY_EXHAUSTED with the last error and the attempts', async (t) => {
  const clock = useFakeClock(t)
  const app = await build(t, { jitter: 'none', maxRetries: 2, budget: false })
  let calls = 0
  const outcome = app.retry(async () => { calls++; throw Object.assign(new Error(`reset ${calls}`), { code: 'ECONNRESET' }) }, { operation: 'lookup' }).catch((e: unknown) => e)
  await clock.runAllAsync()
  const error = await outcome as InstanceType<typeof RetryExhaustedError> & { attempts: number }
  t.ok(isRetryExhaustedError(error))
  t.equal(error.statusCode, 503)
  t.equal(error.attempts, 3)
  t.equal(error.message, 'operation "lookup" failed after 3 attempts')
  t.match(error.cause, { message: 'reset 3' }, 'the cause is the last error')
})

test('a success after retries returns its value and the attempts are numbered', async (t) => {
  const clock = useFakeClock(t)
  const app = await build(t, { jitter: 'none', budget: false })
  const seen: number[] = []
  const outcome = app.retry(async ({ attempt }) => {
    seen.push(attempt)
    if (attempt < 2) throw reset()
    return 'ok'
  }, { operation: 'numbered' })
  await clock.runAllAsync()
  t.equal(await outcome, 'ok')
  t.same(seen, [0, 1, 2])
  t.equal(await metricValue(app, /^operation_retries_sum\{operation="numbered"\}/), 2)
})

test('a non-transient error on the last attempt is thrown as is, not as exhaustion', async (t) => {
  const clock = useFakeClock(t)
  const app = await build(t, { jitter: 'none', maxRetries: 1, budget: false })
  const notFound = Object.assign(new Error('no such player'), { statusCode: 404 })
  const outcome = app.retry(async ({ attempt }) => { throw attempt === 0 ? reset() : notFound }).catch((e: unknown) => e)
  await clock.runAllAsync()
  t.equal(await outcome, notFound)
})

test('a call can turn a budget on when the plugin has it off; unset fields take the standard values', async (t) => {
  useFakeClock(t, ['Date'])
  const app = await build(t, { jitter: 'none', initialDelayMs: 0, budget: false })
  let attempts = 0
  for (let call = 0; call < 20; call++) {
    await app.retry(async () => { attempts++; throw reset() }, { operation: 'budgeted', budget: { minRetriesPerSecond: 0 } }).catch(() => {})
  }
  t.equal(attempts - 20, 4, 'ratio 0.2 of 20 calls, no floor: 4 retries')
})

test('maxElapsedMs ends the retries before a delay would pass the deadline', async (t) => {
  const clock = useFakeClock(t)
  const app = await build(t, { jitter: 'none', maxRetries: 10, budget: false })
  let calls = 0
  const outcome = app.retry(async () => { calls++; throw reset() }, { maxElapsedMs: 1_000 }).catch((e: unknown) => e)
  await clock.runAllAsync()
  const error = await outcome as { attempts: number }
  t.ok(isRetryExhaustedError(error))
  t.equal(calls, 4, 'delays 100 + 200 + 400 fit in 1 s, the next 800 does not')
  t.equal(error.attempts, 4)
})

test('an open circuit is never retried', async (t) => {
  const app = await build(t, { budget: false })
  app.breaker('db').isolate()
  let calls = 0
  const error = await app.retry(async () => { calls++; return await app.breaker('db').execute(async () => 'never') }).catch((e: unknown) => e)
  t.equal(calls, 1)
  t.match(error, { code: 'FST_RESILIENCE_CIRCUIT_OPEN' })
})

test('under 100 % failures over 1 000 calls the retries stay within the budget, and /metrics shows it', async (t) => {
  useFakeClock(t, ['Date']) // the whole run happens within one budget window
  const app = await build(t, { jitter: 'none', initialDelayMs: 0, maxRetries: 3 })
  let attempts = 0
  let exhausted = 0
  let refusedByBudget = 0
  let withoutRetry = 0
  for (let call = 0; call < 1000; call++) {
    let callAttempts = 0
    const error = await app.retry(async () => { attempts++; callAttempts++; throw reset() }, { operation: 'storm' }).catch((e: unknown) => e)
    if (isRetryExhaustedError(error)) exhausted++
    else refusedByBudget++
    if (callAttempts === 1) withoutRetry++
  }
  const retries = attempts - 1000
  const budget = 0.2 * 1000 + 10 * 10
  t.ok(retries <= budget, `${retries} retries within the budget of ${budget}`)
  t.ok(retries >= budget - 3, 'and the budget is used, not wasted')
  t.ok(retries < 3 * 1000, 'far fewer than the 3 000 an unbudgeted client would send')
  t.equal(await metricValue(app, /^retry_budget_exhausted_total\{operation="storm"\}/), refusedByBudget)
  t.equal(exhausted + refusedByBudget, 1000)
  t.equal(await metricValue(app, /^operation_retries_count\{operation="storm"\}/), 1000, 'one observation per call')
  t.equal(await metricValue(app, /^operation_retries_sum\{operation="storm"\}/), retries)
  t.ok(withoutRetry > 600, `most calls got no retry once the budget was spent (${withoutRetry})`)
  t.equal(await metricValue(app, /^operation_retries_bucket\{le="0",operation="storm"\}/), withoutRetry, 'the le="0" bucket counts the calls that got no retry')
})

test('the retry budget slides: spent within its window, retries are allowed again once the window has passed', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  // No share of the calls, a floor of 1 retry per second: 2 retries per 2 s window.
  const app = await build(t, { jitter: 'none', initialDelayMs: 0, maxRetries: 1, budget: { ratio: 0, minRetriesPerSecond: 1, windowMs: 2_000 } })
  const attemptsOfCalls = async (calls: number): Promise<number[]> => {
    const attempts: number[] = []
    for (let call = 0; call < calls; call++) {
      let count = 0
      await app.retry(async () => { count++; throw reset() }).catch(() => {})
      attempts.push(count)
    }
    return attempts
  }
  t.same(await attemptsOfCalls(3), [2, 2, 1], 'two calls retried, then the budget is spent')
  clock.tick(1_000)
  t.same(await attemptsOfCalls(1), [1], 'still spent halfway through the window')
  clock.tick(1_000)
  t.same(await attemptsOfCalls(3), [2, 2, 1], 'a window later the old retries no longer count: two retries again, then spent again')
  clock.tick(2_200)
  t.same(await attemptsOfCalls(1), [2], 'and again once that window has passed, with the clock in another of its buckets')
  t.equal(await metricValue(app, /^retry_budget_exhausted_total\{operation="default"\}/), 3, 'the calls refused by the budget are counted')
})

test('bad options fail with a TypeError naming the option', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [{ maxRetries: -1 }, /^fastify-resilience-retry: "maxRetries" must be a non-negative integer \(got -1\)$/],
    [{ maxRetries: 2.5 }, /"maxRetries" must be a non-negative integer \(got 2.5\)/],
    [{ initialDelayMs: 'fast' }, /"initialDelayMs" must be a non-negative number \(got "fast"\)/],
    [{ multiplier: 0.5 }, /"multiplier" must be a number >= 1 \(got 0.5\)/],
    [{ maxDelayMs: 50 }, /"maxDelayMs" must be at least "initialDelayMs" \(100\) \(got 50\)/],
    [{ jitter: 'random' }, /"jitter" must be one of "decorrelated", "full", "none" \(got "random"\)/],
    [{ maxElapsedMs: 0 }, /"maxElapsedMs" must be a number >= 1 \(got 0\)/],
    [{ isRetryable: 'yes' }, /"isRetryable" must be a function \(got "yes"\)/],
    [{ operation: 'player 42' }, /"operation" must be a name of 1 to 64 letters.* \(got "player 42"\)/],
    [{ budget: true }, /"budget" must be false or an object \(got true\)/],
    [{ budget: { ratio: 2 } }, /"budget.ratio" must be a number from 0 to 1 \(got 2\)/],
    [{ budget: { minRetriesPerSecond: -1 } }, /"budget.minRetriesPerSecond" must be a non-negative number \(got -1\)/],
    [{ budget: { windowMs: 1 } }, /"budget.windowMs" must be a number >= 10 \(got 1\)/],
    [{ budget: { percent: 20 } }, /unknown option "budget.percent"/],
    [{ signal: new AbortController().signal }, /"signal" must be given per call, not as a plugin option/],
    [{ retries: 3 }, /unknown option "retries"/]
  ]
  for (const [options, message] of cases) {
    const app = Fastify()
    t.teardown(() => app.close())
    await t.rejects(async () => { await app.register(retry, options as RetryPluginOptions) }, { name: 'TypeError', message }, JSON.stringify(options))
  }

  const app = await build(t)
  await t.rejects(app.retry(async () => 1, { maxRetries: -2 }), { name: 'TypeError', message: /"retry\(\).maxRetries" must be a non-negative integer \(got -2\)/ })
  await t.rejects(app.retry(async () => 1, { signal: 'soon' as unknown as AbortSignal }), { name: 'TypeError', message: /"signal" must be an AbortSignal \(got "soon"\)/ })
  await t.rejects(app.retry('run' as unknown as () => number), { name: 'TypeError', message: /"fn" must be a function \(got "run"\)/ })
})

test('one operation keeps one budget: other budget settings for it throw', async (t) => {
  const app = await build(t)
  t.equal(await app.retry(async () => 1, { operation: 'lookup', budget: { ratio: 0.5 } }), 1)
  t.equal(await app.retry(async () => 2, { operation: 'lookup', budget: { ratio: 0.5 } }), 2)
  await t.rejects(app.retry(async () => 3, { operation: 'lookup', budget: { ratio: 0.1 } }), {
    name: 'TypeError',
    message: 'fastify-resilience-retry: operation "lookup" already has a retry budget with other settings; use the same "budget" or another "operation"'
  })
  t.equal(await app.retry(async () => 4, { operation: 'lookup', budget: false }), 4, 'a call may opt out of the budget')
})

test('registering the retry plugin twice in one scope fails loudly', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(retry)
  await t.rejects(async () => { await app.register(retry) }, /fastify-resilience-retry has already been registered/)
})

test('per-call options are resolved once per shape, and every difference between shapes is honoured', async (t) => {
  const app = await build(t, { jitter: 'none', initialDelayMs: 0, budget: false })
  const failing = (failures: number): (() => Promise<string>) => {
    let calls = 0
    return async () => {
      if (++calls <= failures) throw Object.assign(new Error('reset'), { code: 'ECONNRESET' })
      return `after ${calls} calls`
    }
  }
  const signal = new AbortController().signal
  for (let round = 0; round < 2; round++) {
    await t.rejects(app.retry(failing(2), { maxRetries: 1, signal }), { code: 'FST_RESILIENCE_RETRY_EXHAUSTED' }, `round ${round}: maxRetries 1`)
    t.equal(await app.retry(failing(2), { maxRetries: 3, signal }), 'after 3 calls', `round ${round}: maxRetries 3`)
    const never = (): boolean => false
    const always = (): boolean => true
    await t.rejects(app.retry(failing(1), { maxRetries: 3, isRetryable: never }), /reset/, `round ${round}: a predicate that refuses`)
    t.equal(await app.retry(failing(1), { maxRetries: 3, isRetryable: always }), 'after 2 calls', `round ${round}: one that accepts`)
    await t.rejects(app.retry(failing(1), { maxRetries: 3, operation: 'spent', budget: { ratio: 0, minRetriesPerSecond: 0 } }), /reset/, `round ${round}: an empty budget`)
    t.equal(await app.retry(failing(1), { maxRetries: 3, operation: 'spent', budget: { ratio: 0, minRetriesPerSecond: 0, windowMs: 10_000 }, maxElapsedMs: undefined }).catch(() => 'refused'), 'refused', `round ${round}: the same budget, spelled out`)
  }
  for (let round = 0; round < 2; round++) {
    await t.rejects(app.retry(failing(0), { maxRetries: -1 }), { name: 'TypeError', message: /"retry\(\)\.maxRetries" must be a non-negative integer \(got -1\)/ }, 'a bad value is refused every time')
    await t.rejects(app.retry(failing(0), { maxRetires: 2 } as never), { name: 'TypeError', message: /unknown option "retry\(\)\.maxRetires"/ }, 'so is an unknown option')
    await t.rejects(app.retry(failing(0), { budget: { ratio: 'half' } } as never), { name: 'TypeError', message: /budget\.ratio/ }, 'and a budget that is not numbers')
    await t.rejects(app.retry(failing(0), { operation: Symbol('op') } as never), { name: 'TypeError' }, 'and a value no key can name')
    await t.rejects(app.retry(failing(0), { budget: new Date() } as never), { name: 'TypeError' }, 'and an object that is not plain')
    await t.rejects(app.retry(failing(0), { budget: null } as never), { name: 'TypeError' }, 'and null')
    await t.rejects(app.retry(failing(0), 'often' as never), { name: 'TypeError', message: /"retry\(\)" must be an object/ }, 'and options that are no object')
  }
  for (let i = 0; i < 300; i++) t.equal(await app.retry(failing(0), { operation: `op_${i}` }), 'after 1 calls')
  t.equal(await app.retry(failing(1), { maxRetries: 1, operation: 'op_0' }), 'after 2 calls', 'still right once the cache has started afresh')
})

test('two calls whose options hold the same values under different names never share settings', async (t) => {
  const app = await build(t, { maxRetries: 3, jitter: 'none', initialDelayMs: 0, budget: false })
  const failing = (failures: number): (() => Promise<string>) => {
    let calls = 0
    return async () => {
      if (++calls <= failures) throw Object.assign(new Error('reset'), { code: 'ECONNRESET' })
      return `after ${calls} calls`
    }
  }
  for (let round = 0; round < 2; round++) {
    await t.rejects(app.retry(failing(2), { maxRetries: 1 }), { code: 'FST_RESILIENCE_RETRY_EXHAUSTED' }, `round ${round}: { maxRetries: 1 } retries once`)
    t.equal(await app.retry(failing(2), { multiplier: 1 }), 'after 3 calls', `round ${round}: { multiplier: 1 } keeps the plugin's 3 retries`)
    t.equal(await app.retry(failing(2), { maxDelayMs: 1 }), 'after 3 calls', `round ${round}: and so does { maxDelayMs: 1 }`)
  }
})
