/**
 * gobreaker's semantics, from its own tests (sony/gobreaker v2,
 * gobreaker_test.go), run through `app.breaker()` on a fake clock. Each test
 * names the gobreaker test or rule it follows. gobreaker's settings in those
 * tests (`newCustom`: MaxRequests 3, Interval 30 s, Timeout 90 s, trip at
 * >= 3 requests and >= 60 % failures, an excluded error) map to
 * `halfOpenMaxCalls: 3, windowMs: 30_000, halfOpenAfterMs: 90_000` and the
 * default `minimumCalls: 3, failureRatio: 0.6`; gobreaker's `IsExcluded` is an
 * error `isFailure` does not count (here: a 404).
 */
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import { test } from 'tap'
import { breaker, metrics } from '../../plugins/index.js'
import type { BreakerOptions } from '../../plugins/breaker.js'
import { isCircuitOpenError } from '../../plugins/errors.js'
import { deferred, useFakeClock } from '../fixtures/clock.js'
import { captureLogs } from '../fixtures/logs.js'
import type { Teardown } from '../fixtures/app.js'

const CUSTOM: BreakerOptions = { halfOpenMaxCalls: 3, windowMs: 30_000, halfOpenAfterMs: 90_000 }

async function build (t: Teardown, defaults: BreakerOptions = CUSTOM, logs?: ReturnType<typeof captureLogs>): Promise<FastifyInstance> {
  const app = Fastify(logs === undefined ? {} : { logger: { level: 'info', stream: logs.stream } })
  t.teardown(() => app.close())
  await app.register(metrics)
  await app.register(breaker, { defaults })
  await app.ready()
  return app
}

const failed = new Error('failed')
const excluded = Object.assign(new Error('excluded'), { statusCode: 404 })

/** Runs one call that ends with `outcome` at once; resolves when it has settled. */
async function call (app: FastifyInstance, outcome: 'succeed' | 'fail' | 'exclude', name = 'cb'): Promise<unknown> {
  return await app.breaker(name).execute(async () => {
    if (outcome === 'fail') throw failed
    if (outcome === 'exclude') throw excluded
    return true
  }).catch((error: unknown) => error)
}

/** A call that runs until its `settle` is called: gobreaker's `succeedLater`, with the end chosen by the test. */
function later (app: FastifyInstance, name = 'cb'): { settle: (outcome: 'succeed' | 'fail' | 'exclude') => Promise<unknown> } {
  const gate = deferred()
  const running = app.breaker(name).execute(async () => { await gate.promise; return true }).catch((error: unknown) => error)
  return {
    settle: async (outcome) => {
      if (outcome === 'succeed') gate.resolve()
      else gate.reject(outcome === 'fail' ? failed : excluded)
      return await running
    }
  }
}

function counts (app: FastifyInstance, name = 'cb'): { calls: number, failures: number } {
  return app.breaker(name).toJSON().window
}

test('TestGeneration: a result from before the window was cleared changes nothing', async (t) => {
  const clock = useFakeClock(t)
  const app = await build(t)
  await call(app, 'succeed')
  await clock.tickAsync(29_000)
  const slow = later(app)
  await clock.tickAsync(500)
  t.same(counts(app), { calls: 2, failures: 0 }, 'the slow call is counted when admitted')
  await clock.tickAsync(500) // over the window
  t.equal(app.breaker('cb').state, 'closed')
  t.same(counts(app), { calls: 0, failures: 0 }, 'a new window starts with fresh counts')
  await slow.settle('fail')
  t.same(counts(app), { calls: 0, failures: 0 }, 'the failure of a call from the previous window is ignored')
})

test('late failures from an expired window do not open the breaker (windowMs 100)', async (t) => {
  const clock = useFakeClock(t)
  const app = await build(t, { windowMs: 100 })
  await call(app, 'succeed')
  const slow = [later(app), later(app), later(app)]
  await clock.tickAsync(150)
  for (const one of slow) t.equal(await one.settle('fail'), failed, 'the caller still gets its error')
  t.equal(app.breaker('cb').state, 'closed', '3 failures after the window ended belong to no window')
  t.same(counts(app), { calls: 0, failures: 0 })
  t.equal(await call(app, 'fail'), failed)
  t.same(counts(app), { calls: 1, failures: 1 }, 'the next call starts the new window')
})

test('calls are counted when admitted: 3 successes in flight and 3 failures are 3/6, so it stays closed', async (t) => {
  useFakeClock(t)
  const app = await build(t)
  const slow = [later(app), later(app), later(app)]
  for (let i = 0; i < 3; i++) await call(app, 'fail')
  t.equal(app.breaker('cb').state, 'closed', '50 % of 6 admitted calls is below 60 %')
  t.same(counts(app), { calls: 6, failures: 3 })
  await call(app, 'fail')
  t.equal(app.breaker('cb').state, 'closed', '4 of 7 = 57 %')
  await call(app, 'fail')
  t.equal(app.breaker('cb').state, 'open', '5 of 8 = 62.5 %')
  for (const one of slow) await one.settle('succeed')
  t.equal(app.breaker('cb').state, 'open', 'the late successes do not close it')
  t.same(counts(app), { calls: 0, failures: 0 }, 'the open state has no window counts')
})

test('calls hung across a trip and a recovery do not re-open the recovered breaker when they fail', async (t) => {
  const clock = useFakeClock(t)
  const logs = captureLogs()
  const app = await build(t, { ...CUSTOM, halfOpenAfterMs: 100 }, logs)
  const hung = [later(app), later(app), later(app)]
  for (let i = 0; i < 5; i++) await call(app, 'fail')
  t.equal(app.breaker('cb').state, 'open', '5 failures of 8 admitted calls')
  await clock.tickAsync(100)
  for (let i = 0; i < 3; i++) await call(app, 'succeed')
  t.equal(app.breaker('cb').state, 'closed', 'three trials closed it')
  for (const one of hung) await one.settle('fail')
  t.equal(app.breaker('cb').state, 'closed', 'no flapping: the hung calls belong to a generation long gone')
  t.same(counts(app), { calls: 0, failures: 0 })
  t.same(logs.lines.filter((line) => line.breaker === 'cb').map((line) => line.msg), [
    'circuit breaker "cb" opened', 'circuit breaker "cb" half-open', 'circuit breaker "cb" closed'
  ], 'one trip, one recovery')
})

test('a late failure while half-open with a trial in flight does not re-open it', async (t) => {
  const clock = useFakeClock(t)
  const app = await build(t)
  const hung = later(app)
  for (let i = 0; i < 3; i++) await call(app, 'fail')
  t.equal(app.breaker('cb').state, 'open', '3 of 4')
  await clock.tickAsync(90_000)
  const trial = later(app)
  t.equal(app.breaker('cb').toJSON().halfOpenCalls, 1)
  await hung.settle('fail')
  t.equal(app.breaker('cb').state, 'half-open', 'the late failure is ignored')
  t.equal(app.breaker('cb').toJSON().halfOpenCalls, 1, 'and takes no trial slot')
  await trial.settle('fail')
  t.equal(app.breaker('cb').state, 'open', 'the trial\'s own failure re-opens it')
})

test('a late success does not count as a half-open trial', async (t) => {
  const clock = useFakeClock(t)
  const app = await build(t)
  const hung = later(app)
  for (let i = 0; i < 3; i++) await call(app, 'fail')
  await clock.tickAsync(90_000)
  await call(app, 'succeed')
  await call(app, 'succeed')
  await hung.settle('succeed')
  t.equal(app.breaker('cb').state, 'half-open', 'two trials succeeded; the third success is from the closed generation')
  await call(app, 'succeed')
  t.equal(app.breaker('cb').state, 'closed')
})

test('while open the window shows 0 calls, whatever late results arrive', async (t) => {
  useFakeClock(t)
  const app = await build(t)
  const hung = [later(app), later(app)]
  for (let i = 0; i < 4; i++) await call(app, 'fail')
  t.equal(app.breaker('cb').state, 'open', '4 of 6')
  for (const one of hung) await one.settle('fail')
  t.same(app.breaker('cb').toJSON(), { name: 'cb', state: 'open', retryAfterMs: 90_000, window: { calls: 0, failures: 0 }, halfOpenCalls: 0 })
})

test('TestCustomCircuitBreaker: the whole life of a breaker, step by step', async (t) => {
  const clock = useFakeClock(t)
  const logs = captureLogs()
  const app = await build(t, CUSTOM, logs)
  const changes = (): string[] => logs.lines.filter((line) => line.breaker === 'cb').map((line) => line.msg)

  for (let i = 0; i < 5; i++) {
    await call(app, 'succeed')
    await call(app, 'fail')
    await call(app, 'exclude')
  }
  t.equal(app.breaker('cb').state, 'closed')
  t.same(counts(app), { calls: 10, failures: 5 }, 'gobreaker: Requests 15, TotalExclusions 5, TotalFailures 5 (valid requests 10)')

  await clock.tickAsync(30_000 - 1)
  await call(app, 'succeed')
  t.equal(app.breaker('cb').state, 'closed')
  t.same(counts(app), { calls: 11, failures: 5 })

  await clock.tickAsync(1_000) // over the window
  await call(app, 'fail')
  t.equal(app.breaker('cb').state, 'closed')
  t.same(counts(app), { calls: 1, failures: 1 })

  // closed to open
  await call(app, 'succeed')
  await call(app, 'fail') // 2/3 >= 0.6
  t.equal(app.breaker('cb').state, 'open')
  t.same(counts(app), { calls: 0, failures: 0 })
  t.same(changes(), ['circuit breaker "cb" opened'])

  // open to half-open
  await clock.tickAsync(90_000)
  t.equal(app.breaker('cb').state, 'half-open')
  t.same(changes().at(-1), 'circuit breaker "cb" half-open')

  // Excluded requests are neutral in half-open: four of them, with 3 trial slots.
  for (let i = 0; i < 4; i++) t.equal(await call(app, 'exclude'), excluded, 'an excluded call runs, it is not refused')
  t.equal(app.breaker('cb').state, 'half-open')
  t.equal(app.breaker('cb').toJSON().halfOpenCalls, 0, 'they free their slots')

  // half-open to open: the first real failure
  await call(app, 'fail')
  t.equal(app.breaker('cb').state, 'open')
  t.same(changes().at(-1), 'circuit breaker "cb" opened')

  // open to half-open; successes do not close it before halfOpenMaxCalls of them
  await clock.tickAsync(90_000)
  t.equal(app.breaker('cb').state, 'half-open')
  await call(app, 'succeed')
  await call(app, 'succeed')
  t.equal(app.breaker('cb').state, 'half-open')
  t.equal(app.breaker('cb').toJSON().halfOpenCalls, 2)

  // half-open to closed
  const third = later(app)
  t.equal(app.breaker('cb').toJSON().halfOpenCalls, 3)
  t.ok(isCircuitOpenError(await call(app, 'succeed')), 'over halfOpenMaxCalls: refused')
  await third.settle('succeed')
  t.equal(app.breaker('cb').state, 'closed')
  t.same(counts(app), { calls: 0, failures: 0 })
  t.same(changes(), [
    'circuit breaker "cb" opened', 'circuit breaker "cb" half-open', 'circuit breaker "cb" opened',
    'circuit breaker "cb" half-open', 'circuit breaker "cb" closed'
  ], 'every transition is logged, open -> half-open included')
  t.same(logs.lines.filter((line) => line.msg === 'circuit breaker "cb" half-open').map((line) => line.level), [30, 30], 'half-open at info')
})

test('neutral trials never close a half-open breaker: three callers that went away prove nothing', async (t) => {
  const clock = useFakeClock(t)
  const app = await build(t)
  for (let i = 0; i < 3; i++) await call(app, 'fail')
  await clock.tickAsync(90_000)
  for (let i = 0; i < 3; i++) {
    const caller = new AbortController()
    const trial = app.breaker('cb').execute(async ({ signal }) => await new Promise((_resolve, reject) => {
      signal.addEventListener('abort', () => reject(new Error('client went away')))
    }), caller.signal)
    caller.abort()
    await t.rejects(trial, /client went away/)
  }
  t.equal(app.breaker('cb').state, 'half-open', 'still waiting for trials that prove something')
  t.equal(app.breaker('cb').toJSON().halfOpenCalls, 0)
  for (let i = 0; i < 3; i++) await call(app, 'succeed')
  t.equal(app.breaker('cb').state, 'closed')
})

test('TestCircuitBreakerInParallel: 2 000 concurrent calls, half of them excluded, are all counted exactly', async (t) => {
  useFakeClock(t)
  const app = await build(t)
  const gates = Array.from({ length: 2_000 }, () => later(app))
  t.same(counts(app), { calls: 2_000, failures: 0 }, 'every admitted call is counted')
  await Promise.all(gates.map(async (gate, index) => await gate.settle(index % 2 === 0 ? 'succeed' : 'exclude')))
  t.same(counts(app), { calls: 1_000, failures: 0 }, 'the excluded ones leave the window')
  t.equal(app.breaker('cb').state, 'closed')
})

test('an isFailure that throws counts the error as a failure, so a half-open slot is never lost', async (t) => {
  const clock = useFakeClock(t)
  const app = await build(t, { ...CUSTOM, halfOpenMaxCalls: 1, isFailure: () => { throw new Error('predicate bug') } })
  for (let i = 0; i < 3; i++) t.equal(await call(app, 'fail'), failed, 'the caller gets the call\'s own error')
  t.equal(app.breaker('cb').state, 'open')
  await clock.tickAsync(90_000)
  await call(app, 'fail')
  t.equal(app.breaker('cb').state, 'open', 'the trial settled as a failure')
})

test('results of calls admitted before isolate() change nothing, and release starts a fresh window', async (t) => {
  useFakeClock(t)
  const app = await build(t)
  const hung = [later(app), later(app), later(app)]
  const handle = app.breaker('cb').isolate()
  for (const one of hung) await one.settle('fail')
  t.equal(app.breaker('cb').state, 'isolated')
  handle.dispose()
  t.equal(app.breaker('cb').state, 'closed')
  t.same(counts(app), { calls: 0, failures: 0 })
})

test('the calls metric still counts a late result that the state ignores', async (t) => {
  const clock = useFakeClock(t)
  const app = await build(t, { windowMs: 100 })
  const slow = later(app)
  await clock.tickAsync(150)
  await slow.settle('fail')
  t.same(counts(app), { calls: 0, failures: 0 })
  t.match((await app.inject('/metrics')).body, /^circuit_breaker_calls_total\{name="cb",result="failure"\} 1$/m, 'the call did fail')
})
