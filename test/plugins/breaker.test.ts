import { readFileSync } from 'node:fs'
import { IterableBackoff } from 'cockatiel'
import Fastify from 'fastify'
import { Registry } from 'prom-client'
import type { FastifyInstance } from 'fastify'
import { test } from 'tap'
import { breaker, metrics } from '../../plugins/index.js'
import type { BreakerPluginOptions } from '../../plugins/breaker.js'
import { isCircuitOpenError, isTimeoutError } from '../../plugins/errors.js'
import { deferred, useFakeClock } from '../fixtures/clock.js'
import { captureLogs } from '../fixtures/logs.js'
import type { Teardown } from '../fixtures/app.js'

async function build (t: Teardown, options: BreakerPluginOptions = {}, logger?: ReturnType<typeof captureLogs>, routes?: (app: FastifyInstance) => void): Promise<FastifyInstance> {
  const app = Fastify(logger === undefined ? {} : { logger: { level: 'info', stream: logger.stream } })
  t.teardown(() => app.close())
  await app.register(metrics)
  await app.register(breaker, options)
  routes?.(app)
  await app.ready()
  return app
}

const boom = async (): Promise<never> => { throw new Error('boom') }
const fine = async (): Promise<string> => 'fine'

/** Runs each outcome through the breaker in order: 'F' fails, 'S' succeeds. */
async function run (app: FastifyInstance, name: string, outcomes: string): Promise<void> {
  for (const outcome of outcomes) {
    await app.breaker(name).execute(outcome === 'F' ? boom : fine).catch(() => {})
  }
}

async function metricValue (app: FastifyInstance, pattern: RegExp): Promise<number | undefined> {
  const body = (await app.inject('/metrics')).body
  const match = body.split('\n').find((line) => pattern.test(line))
  return match === undefined ? undefined : Number(match.split(' ').at(-1))
}

const stateGauge = (name: string): RegExp => new RegExp(`^circuit_breaker_state\\{name="${name}"\\} `)
const callsCounter = (name: string, result: string): RegExp => new RegExp(`^circuit_breaker_calls_total\\{name="${name}",result="${result}"\\} `)

test('2 failed calls out of 2 leave the breaker closed', async (t) => {
  useFakeClock(t)
  const app = await build(t)
  await run(app, 'db', 'FF')
  t.equal(app.breaker('db').state, 'closed')
  t.equal(await app.breaker('db').execute(fine), 'fine', 'calls still go through')
})

test('3 failed calls out of 3 open it, and the next call is refused with 503 and Retry-After', async (t) => {
  useFakeClock(t)
  const app = await build(t, {}, undefined, (instance) => {
    instance.get('/player', async () => await instance.breaker('db').execute(fine))
  })
  await run(app, 'db', 'FFF')
  t.equal(app.breaker('db').state, 'open')

  let called = false
  const refusal = await app.breaker('db').execute(async () => { called = true }).catch((error: unknown) => error)
  t.equal(called, false, 'the function is not run while open')
  t.ok(isCircuitOpenError(refusal))
  t.same((refusal as { headers: unknown }).headers, { 'retry-after': '30' })

  const response = await app.inject('/player')
  t.equal(response.statusCode, 503)
  t.equal(response.headers['retry-after'], '30')
  t.same(response.json(), { statusCode: 503, code: 'FST_RESILIENCE_CIRCUIT_OPEN', error: 'Service Unavailable', message: 'circuit "db" is open, try again later' })
})

test('3 failures in 5 calls open it, while 2 in 5 do not', async (t) => {
  useFakeClock(t)
  const app = await build(t)
  await run(app, 'three', 'SSFFF')
  t.equal(app.breaker('three').state, 'open', '3/5 = 60 %')
  await run(app, 'two', 'SSSFF')
  t.equal(app.breaker('two').state, 'closed', '2/5 = 40 %')
  t.same(app.breaker('two').toJSON().window, { calls: 5, failures: 2 })
})

test('counts start afresh when the 10 s window has passed', async (t) => {
  const clock = useFakeClock(t)
  const app = await build(t)
  await run(app, 'late', 'FF')
  await clock.tickAsync(10_000)
  await run(app, 'late', 'F')
  t.equal(app.breaker('late').state, 'closed', 'the two earlier failures expired with their window')
  t.same(app.breaker('late').toJSON().window, { calls: 1, failures: 1 })
  await run(app, 'late', 'FF')
  t.equal(app.breaker('late').state, 'open', 'three failures within one window open it')

  await run(app, 'inside', 'FF')
  await clock.tickAsync(9_999)
  await run(app, 'inside', 'F')
  t.equal(app.breaker('inside').state, 'open', '1 ms before the window ends the counts still hold')
})

test('state and the gauge read half-open as soon as 30 s have passed, before any call', async (t) => {
  const clock = useFakeClock(t)
  const app = await build(t)
  await run(app, 'db', 'FFF')
  await clock.tickAsync(29_999)
  t.equal(app.breaker('db').state, 'open')
  t.equal(app.breaker('db').retryAfterMs, 1)
  t.equal(await metricValue(app, stateGauge('db')), 1)
  await clock.tickAsync(1)
  t.equal(app.breaker('db').state, 'half-open')
  t.equal(app.breaker('db').retryAfterMs, 0)
  t.equal(await metricValue(app, stateGauge('db')), 2)
})

test('half-open runs 3 concurrent trial calls, refuses a 4th at once, and closes when they succeed', async (t) => {
  const clock = useFakeClock(t)
  const app = await build(t)
  const cockatiel = JSON.parse(readFileSync(new URL('../../node_modules/cockatiel/package.json', import.meta.url), 'utf8')) as { version: string }
  t.match(cockatiel.version, /^4\./, 'cockatiel 4 (its backoffs, retry and timeouts) runs on this Node')
  await run(app, 'db', 'FFF')
  await clock.tickAsync(30_000)

  const gates = [deferred<string>(), deferred<string>(), deferred<string>()]
  const trials = gates.map(async (gate) => await app.breaker('db').execute(async () => await gate.promise))
  t.equal(app.breaker('db').toJSON().halfOpenCalls, 3)

  let fourthRan = false
  const fourth = await app.breaker('db').execute(async () => { fourthRan = true }).catch((error: unknown) => error)
  t.ok(isCircuitOpenError(fourth), 'the 4th call is refused while the trials are still running')
  t.equal(fourthRan, false)
  t.same((fourth as { headers: unknown }).headers, { 'retry-after': '1' })

  gates.forEach((gate, index) => gate.resolve(`trial ${index}`))
  t.same(await Promise.all(trials), ['trial 0', 'trial 1', 'trial 2'])
  t.equal(app.breaker('db').state, 'closed')
  t.equal(await metricValue(app, stateGauge('db')), 0)
})

test('a failing trial re-opens the breaker for another 30 s', async (t) => {
  const clock = useFakeClock(t)
  const app = await build(t)
  await run(app, 'db', 'FFF')
  await clock.tickAsync(30_000)
  await run(app, 'db', 'F')
  t.equal(app.breaker('db').state, 'open')
  t.equal(app.breaker('db').retryAfterMs, 30_000)
  await clock.tickAsync(30_000)
  t.equal(app.breaker('db').state, 'half-open')
})

test('halfOpenAfterMs takes a backoff whose delay grows each time the circuit re-opens', async (t) => {
  const clock = useFakeClock(t)
  const app = await build(t, { defaults: { halfOpenAfterMs: new IterableBackoff([1_000, 5_000]) } })
  await run(app, 'db', 'FFF')
  t.equal(app.breaker('db').retryAfterMs, 1_000)
  await clock.tickAsync(1_000)
  await run(app, 'db', 'F')
  t.equal(app.breaker('db').retryAfterMs, 5_000, 'the second opening waits longer')
  await clock.tickAsync(4_999)
  t.equal(app.breaker('db').state, 'open')
})

test('client-type errors (status below 500) do not count as failures', async (t) => {
  useFakeClock(t)
  const app = await build(t)
  const notFound = Object.assign(new Error('player not found'), { statusCode: 404 })
  const badRequest = Object.assign(new Error('bad id'), { status: 400 })
  for (const error of [notFound, notFound, badRequest, notFound, badRequest]) {
    await t.rejects(app.breaker('db').execute(async () => { throw error }), error, 'the error itself reaches the caller')
  }
  t.equal(app.breaker('db').state, 'closed')
  t.equal(await metricValue(app, callsCounter('db', 'failure')), undefined, 'no failure counted')

  const unavailable = Object.assign(new Error('upstream down'), { statusCode: 503 })
  for (let i = 0; i < 3; i++) await app.breaker('db').execute(async () => { throw unavailable }).catch(() => {})
  t.equal(app.breaker('db').state, 'open', 'a 503 does count')
})

test('a thrown value that is not an object counts as a failure', async (t) => {
  useFakeClock(t)
  const app = await build(t)
  for (let i = 0; i < 3; i++) {
    // eslint-disable-next-line no-throw-literal
    await t.rejects(app.breaker('db').execute(async () => { throw 'down' }))
  }
  t.equal(app.breaker('db').state, 'open')
})

test('a function that throws at once rejects the call and counts as a failure', async (t) => {
  useFakeClock(t)
  const app = await build(t)
  const broken = new Error('thrown before any await')
  for (let i = 0; i < 3; i++) {
    await t.rejects(app.breaker('db').execute(() => { throw broken }), broken, 'a rejection, not a synchronous throw')
  }
  t.equal(app.breaker('db').state, 'open')
})

test('a custom isFailure decides what counts', async (t) => {
  useFakeClock(t)
  const app = await build(t, { defaults: { isFailure: (error) => (error as Error).message === 'counted' } })
  await run(app, 'db', 'FFF')
  t.equal(app.breaker('db').state, 'closed', '"boom" is not counted by this predicate')
  for (let i = 0; i < 3; i++) await app.breaker('db').execute(async () => { throw new Error('counted') }).catch(() => {})
  t.equal(app.breaker('db').state, 'open')
})

test('a call slower than timeoutMs fails with FST_RESILIENCE_TIMEOUT, aborts its signal and counts as a failure', async (t) => {
  const clock = useFakeClock(t)
  const app = await build(t, { defaults: { timeoutMs: 1_000 } })
  const signals: AbortSignal[] = []
  const slow = async ({ signal }: { signal: AbortSignal }): Promise<never> => {
    signals.push(signal)
    return await new Promise<never>(() => {})
  }
  for (let i = 0; i < 3; i++) {
    const call = app.breaker('db').execute(slow).catch((e: unknown) => e)
    await clock.tickAsync(999)
    t.equal(signals[i]?.aborted, false, 'not cut before timeoutMs')
    await clock.tickAsync(1)
    const error = await call
    t.ok(isTimeoutError(error), 'rejects with the timeout error')
    t.equal(signals[i]?.aborted, true, 'the call\'s signal is aborted')
    t.ok(isTimeoutError(signals[i]?.reason), 'with the timeout as reason')
  }
  t.equal(app.breaker('db').state, 'open', 'three timeouts open the breaker')
  t.equal(await metricValue(app, callsCounter('db', 'failure')), 3)
})

test('a call whose caller gave up is not counted against the dependency', async (t) => {
  useFakeClock(t)
  const app = await build(t)
  for (let i = 0; i < 3; i++) {
    const caller = new AbortController()
    const call = app.breaker('db').execute(async ({ signal }) => await new Promise((_resolve, reject) => {
      signal.addEventListener('abort', () => reject(new Error('aborted by client')))
    }), caller.signal)
    caller.abort()
    await t.rejects(call, /aborted by client/)
  }
  t.equal(app.breaker('db').state, 'closed')
})

test('isolate() holds the breaker open until every handle is disposed', async (t) => {
  useFakeClock(t)
  const app = await build(t)
  const first = app.breaker('db').isolate()
  const second = app.breaker('db').isolate()
  t.equal(app.breaker('db').state, 'isolated')
  t.equal(await metricValue(app, stateGauge('db')), 1, 'isolated counts as open')
  const refusal = await app.breaker('db').execute(fine).catch((error: unknown) => error)
  t.ok(isCircuitOpenError(refusal))
  t.same((refusal as { headers: unknown }).headers, { 'retry-after': '30' })
  first.dispose()
  first.dispose()
  t.equal(app.breaker('db').state, 'isolated', 'one handle still holds it')
  second.dispose()
  t.equal(app.breaker('db').state, 'closed')
  t.equal(await app.breaker('db').execute(fine), 'fine')
})

test('an isolated breaker with a backoff suggests retrying after 30 s', async (t) => {
  useFakeClock(t)
  const app = await build(t, { defaults: { halfOpenAfterMs: new IterableBackoff([1_000]) } })
  app.breaker('db').isolate()
  t.equal(app.breaker('db').retryAfterMs, 30_000)
})

test('/metrics follows every transition and counts success, failure and rejected calls', async (t) => {
  const clock = useFakeClock(t)
  const app = await build(t)
  app.breaker('db')
  t.equal(await metricValue(app, stateGauge('db')), 0, 'closed')
  await run(app, 'db', 'SFF')
  t.equal(await metricValue(app, stateGauge('db')), 1, 'open: 2 of 3 calls failed')
  await run(app, 'db', 'SS')
  t.equal(await metricValue(app, callsCounter('db', 'rejected')), 2)
  await clock.tickAsync(30_000)
  t.equal(await metricValue(app, stateGauge('db')), 2, 'half-open')
  await run(app, 'db', 'SSS')
  t.equal(await metricValue(app, stateGauge('db')), 0, 'closed again')
  t.equal(await metricValue(app, callsCounter('db', 'success')), 4)
  t.equal(await metricValue(app, callsCounter('db', 'failure')), 2)
})

test('state changes are logged: warn with the last error on open, info on close', async (t) => {
  const clock = useFakeClock(t)
  const logs = captureLogs()
  const app = await build(t, {}, logs)
  await run(app, 'db', 'FFF')
  const opened = logs.lines.find((line) => line.msg === 'circuit breaker "db" opened')
  t.equal(opened?.level, 40)
  t.equal(opened?.breaker, 'db')
  t.match(opened?.err, { message: 'boom' })
  await clock.tickAsync(30_000)
  await run(app, 'db', 'SSS')
  const closed = logs.lines.find((line) => line.msg === 'circuit breaker "db" closed')
  t.equal(closed?.level, 30)
  app.breaker('db').isolate()
  t.equal(logs.lines.find((line) => line.msg === 'circuit breaker "db" isolated')?.level, 40)
})

test('after close the breaker listeners are released', async (t) => {
  useFakeClock(t)
  const logs = captureLogs()
  const app = await build(t, {}, logs)
  app.breaker('db')
  await app.close()
  await run(app, 'db', 'FFF')
  t.notOk(logs.lines.some((line) => line.msg === 'circuit breaker "db" opened'), 'but nothing listens any more')
})

test('two breakers and two apps stay independent', async (t) => {
  useFakeClock(t)
  const first = await build(t)
  const second = await build(t)
  await run(first, 'db', 'FFF')
  t.equal(first.breaker('db').state, 'open')
  t.equal(first.breaker('cache').state, 'closed', 'another breaker of the same app')
  t.equal(second.breaker('db').state, 'closed', 'the same name in another app')
  t.equal(await metricValue(second, stateGauge('db')), 0)
  t.not(first.breaker('db'), second.breaker('db'))
  t.same(first.breaker.list().map((b) => b.name), ['db', 'cache'])
})

test('two apps sharing one registry both report their breakers\' states', async (t) => {
  const registry = new Registry()
  const primary = Fastify()
  const replica = Fastify()
  for (const app of [primary, replica]) {
    t.teardown(() => app.close())
    await app.register(metrics, { registry })
    await app.register(breaker)
  }
  primary.breaker('primary').isolate()
  replica.breaker('replica')
  const text = await registry.metrics()
  t.match(text, /^circuit_breaker_state\{name="primary"\} 1$/m)
  t.match(text, /^circuit_breaker_state\{name="replica"\} 0$/m)
})

test('the same name returns the same breaker; other options for it throw', async (t) => {
  const app = await build(t)
  const db = app.breaker('db', { timeoutMs: 500 })
  t.equal(app.breaker('db'), db)
  t.equal(app.breaker('db', { timeoutMs: 500 }), db)
  t.throws(() => app.breaker('db', { timeoutMs: 600 }), {
    name: 'TypeError',
    message: 'fastify-resilience-breaker: breaker "db" already exists with another "timeoutMs"; use the same options or another name'
  })
})

test('the snapshot tells the state for health checks', async (t) => {
  useFakeClock(t)
  const app = await build(t)
  await run(app, 'db', 'FFF')
  t.same(JSON.parse(JSON.stringify(app.breaker('db'))), { name: 'db', state: 'open', retryAfterMs: 30_000, window: { calls: 0, failures: 0 }, halfOpenCalls: 0 })
})

test('bad options fail with a TypeError naming the option', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [{ defaults: { failureRatio: 1.5 } }, /^fastify-resilience-breaker: "defaults.failureRatio" must be a number from 0 to 1 \(got 1.5\)$/],
    [{ defaults: { failureRatio: 0 } }, /"defaults.failureRatio" must be a number above 0 and at most 1 \(got 0\)/],
    [{ defaults: { minimumCalls: 0 } }, /"defaults.minimumCalls" must be an integer >= 1 \(got 0\)/],
    [{ defaults: { windowMs: -1 } }, /"defaults.windowMs" must be a number >= 1 \(got -1\)/],
    [{ defaults: { halfOpenAfterMs: -1 } }, /"defaults.halfOpenAfterMs" must be a positive number of milliseconds or a cockatiel backoff \(got -1\)/],
    [{ defaults: { halfOpenAfterMs: 'soon' } }, /"defaults.halfOpenAfterMs" must be .* \(got "soon"\)/],
    [{ defaults: { halfOpenMaxCalls: 1.5 } }, /"defaults.halfOpenMaxCalls" must be an integer >= 1 \(got 1.5\)/],
    [{ defaults: { timeoutMs: 0 } }, /"defaults.timeoutMs" must be a number >= 1 \(got 0\)/],
    [{ defaults: { isFailure: true } }, /"defaults.isFailure" must be a function \(got true\)/],
    [{ defaults: { threshold: 0.5 } }, /unknown option "defaults.threshold"/],
    [{ defualts: {} }, /unknown option "defualts" \(known options: defaults, shared\)/]
  ]
  for (const [options, message] of cases) {
    const app = Fastify()
    t.teardown(() => app.close())
    await t.rejects(async () => { await app.register(breaker, options as BreakerPluginOptions) }, { name: 'TypeError', message }, JSON.stringify(options))
  }

  const app = await build(t)
  t.throws(() => app.breaker('db', { halfOpenMaxCalls: 0 }), { name: 'TypeError', message: /"breaker\("db"\).halfOpenMaxCalls" must be an integer >= 1 \(got 0\)/ })
  t.throws(() => app.breaker(''), { name: 'TypeError', message: /"name" must be a name of 1 to 64 letters/ })
  t.throws(() => app.breaker(undefined as unknown as string), { name: 'TypeError', message: /"name" must be a name of 1 to 64 letters.* \(got undefined\)/ })
  t.throws(() => app.breaker('player 42'), { name: 'TypeError', message: /\(got "player 42"\)/ })
})

test('registering the breaker plugin twice in one scope fails loudly', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(breaker)
  await t.rejects(async () => { await app.register(breaker) }, /fastify-resilience-breaker has already been registered/)
})

test('works without the metrics plugin, writing to the app\'s own registry', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(breaker)
  await app.ready()
  await run(app, 'db', 'S')
  t.match(await app.metricsRegistry.metrics(), /circuit_breaker_calls_total\{name="db",result="success"\} 1/)
})
