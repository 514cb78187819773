import fastifyPostgres from '@fastify/postgres'
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import { request as httpRequest } from 'node:http'
import { test } from 'tap'
import resilience, { breaker, flags, loadShedding, retry, routePolicy } from '../../plugins/index.js'
import type { ResilienceOptions } from '../../plugins/resilience.js'
import { deferred, useFakeClock } from '../fixtures/clock.js'
import { get } from '../fixtures/http.js'
import { captureLogs } from '../fixtures/logs.js'
import { testDatabaseUrl } from '../fixtures/services.js'
import { waitFor, within } from '../fixtures/wait.js'
import { testApp } from '../fixtures/app.js'
import type { Teardown } from '../fixtures/app.js'

async function build (t: Teardown, routes: (app: FastifyInstance) => void, options: ResilienceOptions = {}): Promise<FastifyInstance> {
  return await testApp(t, async (app) => {
    await app.register(resilience, { retry: { jitter: 'none', initialDelayMs: 1, budget: false }, ...options })
    routes(app)
  })
}

const unavailable = (): Error => Object.assign(new Error('upstream unavailable'), { statusCode: 503 })

test('a transient failure is retried and the route answers 200', async (t) => {
  let calls = 0
  const app = await build(t, (instance) => {
    instance.get('/flaky', { config: { resilience: { retry: { maxRetries: 2 } } } }, async () => {
      if (++calls < 3) throw unavailable()
      return { ok: true }
    })
  })
  const response = await app.inject('/flaky')
  t.equal(response.statusCode, 200)
  t.equal(calls, 3)
})

test('retry does not retry when the breaker is open', async (t) => {
  let calls = 0
  const app = await build(t, (instance) => {
    instance.get('/db', { config: { resilience: { retry: { maxRetries: 3 }, breaker: 'database' } } }, async () => { calls++; return 'never' })
  })
  app.breaker('database').isolate()
  const response = await app.inject('/db')
  t.equal(response.statusCode, 503)
  t.equal(response.json().code, 'FST_RESILIENCE_CIRCUIT_OPEN')
  t.ok(response.headers['retry-after'])
  t.equal(calls, 0, 'the handler never ran')
})

test('a breaker that opens during retries stops them', async (t) => {
  let calls = 0
  const app = await build(t, (instance) => {
    instance.get('/db', { config: { resilience: { retry: { maxRetries: 5 }, breaker: { name: 'fragile', minimumCalls: 2, failureRatio: 1 } } } }, async () => {
      calls++
      throw unavailable()
    })
  })
  const response = await app.inject('/db')
  t.equal(calls, 2, 'two failures opened the breaker; the third attempt was refused, not run')
  t.equal(response.statusCode, 503)
  t.equal(response.json().code, 'FST_RESILIENCE_CIRCUIT_OPEN')
  t.equal(app.breaker('fragile').state, 'open')
})

test('the fallback receives FST_RESILIENCE_CIRCUIT_OPEN and its value is sent with 200', async (t) => {
  let seen: unknown
  const app = await build(t, (instance) => {
    instance.get('/players/:id', {
      config: {
        resilience: {
          breaker: 'database',
          fallback: (request, error) => {
            seen = error
            return { id: (request.params as { id: string }).id, degraded: true }
          }
        }
      }
    }, async (_request, reply) => { reply.code(500); return 'never' })
  })
  app.breaker('database').isolate()
  const response = await app.inject('/players/7')
  t.equal(response.statusCode, 200)
  t.same(response.json(), { id: '7', degraded: true })
  t.match(seen, { code: 'FST_RESILIENCE_CIRCUIT_OPEN' })
})

test('the route fallback never stands in for an error the request caused (400, 404, 409, 422, SQLSTATE 23505)', async (t) => {
  let used = 0
  const app = await build(t, (instance) => {
    instance.get('/error/:kind', { config: { resilience: { breaker: 'db', fallback: () => { used++; return { degraded: true } } } } }, async (request) => {
      const { kind } = request.params as { kind: string }
      if (kind === 'unique') throw Object.assign(new Error('duplicate key value violates unique constraint'), { code: '23505' })
      throw Object.assign(new Error(`status ${kind}`), { statusCode: Number(kind) })
    })
  })
  for (const status of [400, 404, 409, 422]) {
    const response = await app.inject(`/error/${status}`)
    t.equal(response.statusCode, status, `${status} reaches the client`)
    t.equal(response.json().message, `status ${status}`)
  }
  t.equal((await app.inject('/error/unique')).statusCode, 500, 'a constraint violation is not replaced by the fallback (the app\'s error handler answers it)')
  t.equal(used, 0, 'the fallback never ran')
  t.equal((await app.inject('/error/503')).statusCode, 200, 'a dependency failure still falls back')
  t.equal(used, 1)
})

test('timed-out attempts answer 503 FST_RESILIENCE_TIMEOUT, abort their signal and count as breaker failures', async (t) => {
  const signals: AbortSignal[] = []
  const app = await build(t, (instance) => {
    instance.get('/slow', { config: { resilience: { timeoutMs: 30, breaker: { name: 'slow', minimumCalls: 3, failureRatio: 1 } } } }, async (request) => {
      signals.push(request.attemptSignal)
      return await new Promise(() => {})
    })
  })
  for (let i = 0; i < 3; i++) {
    const response = await within('the answer to a request whose handler never ends (its 30 ms timeout should cut it)', app.inject('/slow'))
    t.equal(response.statusCode, 503)
    t.same(response.json(), { statusCode: 503, code: 'FST_RESILIENCE_TIMEOUT', error: 'Service Unavailable', message: 'operation timed out after 30 ms' })
  }
  t.equal(signals.length, 3)
  t.ok(signals.every((signal) => signal.aborted), 'every timed-out attempt\'s signal aborted')
  t.equal(app.breaker('slow').state, 'open', 'three timeouts opened the breaker')
  t.equal((await app.inject('/slow')).json().code, 'FST_RESILIENCE_CIRCUIT_OPEN')
})

test('a handler that replied and then lingers past timeoutMs keeps its reply', async (t) => {
  const clock = useFakeClock(t)
  const logs = captureLogs()
  const app = Fastify({ logger: { level: 'warn', stream: logs.stream } })
  t.teardown(() => app.close())
  await app.register(resilience, { loadShedding: false, flags: false })
  const linger = deferred()
  const finished = deferred()
  app.get('/lingers', { config: { resilience: { timeoutMs: 20 } } }, async (_request, reply) => {
    await reply.send('answered')
    await linger.promise
    finished.resolve()
  })
  const response = await app.inject('/lingers')
  t.equal(response.statusCode, 200)
  t.equal(response.body, 'answered')
  await clock.tickAsync(20)
  linger.resolve()
  await finished.promise
  t.notOk(logs.lines.some((line) => line.level >= 40), 'no timeout error after the reply')
})

test('the attempt signal aborts when the client disconnects, also if it is first read after that', async (t) => {
  const seen = { early: deferred<AbortSignal>(), late: deferred<AbortSignal>(), replied: deferred<AbortSignal>(), retrying: deferred<AbortSignal>() }
  let retryingCalls = 0
  const retryingSettled = deferred()
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(resilience, { metrics: false, loadShedding: false, flags: false })
  // The pipeline's error reaches Fastify only once the retry loop has ended (not while it sleeps).
  app.addHook('onError', async (request) => { if (request.url === '/retrying') retryingSettled.resolve() })
  app.get('/early', { config: { resilience: { timeoutMs: 60_000 } } }, async (request) => {
    const signal = request.attemptSignal
    await new Promise((resolve) => signal.addEventListener('abort', resolve))
    seen.early.resolve(signal)
    return 'too late'
  })
  app.get('/late', { config: { resilience: { timeoutMs: 60_000 } } }, async (request, reply) => {
    await new Promise((resolve) => reply.raw.once('close', resolve))
    seen.late.resolve(request.attemptSignal)
    return 'too late'
  })
  app.get('/replied', { config: { resilience: { timeoutMs: 60_000 } } }, async (request, reply) => {
    const closed = new Promise((resolve) => reply.raw.once('close', resolve))
    await reply.send('answered')
    await closed
    seen.replied.resolve(request.attemptSignal)
  })
  app.get('/retrying', { config: { resilience: { retry: { maxRetries: 3 } } } }, async (request) => {
    retryingCalls++
    const signal = request.attemptSignal
    await new Promise((resolve) => signal.addEventListener('abort', resolve))
    seen.retrying.resolve(signal)
    throw unavailable()
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  t.equal((await get(port, '/replied')).body, 'answered')
  t.equal((await seen.replied.promise).aborted, false, 'a signal read after a complete reply does not abort')
  for (const path of ['/early', '/late', '/retrying']) {
    const client = httpRequest({ host: '127.0.0.1', port, path, agent: false })
    client.on('error', () => {})
    client.end()
    client.on('socket', (socket) => socket.once('connect', () => setImmediate(() => client.destroy())))
  }
  const early = await within('the attempt signal to abort when the client disconnected', seen.early.promise)
  const late = await seen.late.promise
  t.equal(early.aborted, true)
  t.match(early.reason, /the client closed the connection before the reply/)
  t.equal(late.aborted, true, 'a signal first read after the client left is born aborted')
  t.equal((await within('the attempt signal of a retried route to abort when the client disconnected', seen.retrying.promise)).aborted, true, 'on a retried route too')
  await within('the retry loop to end once the client had disconnected', retryingSettled.promise)
  t.equal(retryingCalls, 1, 'the retry loop ended without another attempt')
})

test('a handler that first asks for its signal after its attempt timed out gets an aborted one', async (t) => {
  const clock = useFakeClock(t)
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(resilience, { metrics: false, loadShedding: false, flags: false })
  const gate = deferred()
  const seen = deferred<AbortSignal>()
  app.get('/late-reader', { config: { resilience: { timeoutMs: 100 } } }, async (request) => {
    await gate.promise
    seen.resolve(request.attemptSignal)
    return 'too late'
  })
  const response = Promise.resolve(app.inject('/late-reader'))
  await clock.tickAsync(100)
  t.equal((await within('the answer once the 100 ms attempt timeout passed on the fake clock', response)).json().code, 'FST_RESILIENCE_TIMEOUT')
  gate.resolve()
  const signal = await seen.promise
  t.equal(signal.aborted, true, 'born aborted: the attempt is over')
  t.match(signal.reason, { code: 'FST_RESILIENCE_TIMEOUT' })
})

test('each retry attempt gets a fresh signal; the timed-out one is aborted', async (t) => {
  const signals: AbortSignal[] = []
  const app = await build(t, (instance) => {
    instance.get('/second-try', { config: { resilience: { timeoutMs: 30, retry: { maxRetries: 1 } } } }, async (request) => {
      signals.push(request.attemptSignal)
      if (signals.length === 1) return await new Promise(() => {})
      return 'second attempt'
    })
  })
  const response = await within('the answer of the second attempt (the first one\'s 30 ms timeout should cut it)', app.inject('/second-try'))
  t.equal(response.body, 'second attempt')
  t.equal(signals[0]?.aborted, true)
  t.equal(signals[1]?.aborted, false)
  t.not(signals[0], signals[1])
})

test('a real slow PostgreSQL query given the attempt signal is cancelled on the server', async (t) => {
  let backendPid = 0
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyPostgres, { connectionString: testDatabaseUrl() })
  await app.register(resilience, { metrics: false, loadShedding: false, flags: false, retry: false, fallback: false })
  app.get('/report', { config: { resilience: { timeoutMs: 200 } } }, async (request) => {
    const client = await app.pg.connect()
    try {
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')
      backendPid = rows[0]?.pid as number
      // node-postgres has no AbortSignal support: cancel the statement on the server when the signal
      // fires. A cancel that lands just before the statement starts cancels nothing, so repeat it
      // until the statement has ended.
      const statement = { running: true }
      const cancel = async (): Promise<void> => {
        while (statement.running) {
          await app.pg.query('SELECT pg_cancel_backend($1)', [backendPid]).catch(() => {})
          await new Promise((resolve) => setTimeout(resolve, 50))
        }
      }
      request.attemptSignal.addEventListener('abort', () => { cancel().catch(() => {}) })
      request.attemptSignal.throwIfAborted()
      try {
        return (await client.query('SELECT pg_sleep(30)')).rows
      } finally {
        statement.running = false
      }
    } finally {
      client.release()
    }
  })
  await app.ready()
  const response = await app.inject('/report')
  t.equal(response.statusCode, 503)
  t.equal(response.json().code, 'FST_RESILIENCE_TIMEOUT')
  await waitFor('the backend to stop running pg_sleep', async () => {
    // The pool may run this very check on the released backend: its own text matches the LIKE, hence `<> pg_backend_pid()`.
    const { rows } = await app.pg.query<{ running: number }>("SELECT count(*)::int AS running FROM pg_stat_activity WHERE pid = $1 AND pid <> pg_backend_pid() AND state = 'active' AND query LIKE '%pg_sleep(30)%'", [backendPid])
    return rows[0]?.running === 0
  })
  t.pass('pg_stat_activity shows the query is no longer running')
})

test('a disabled flag leaves the handler and the breaker untouched', async (t) => {
  let calls = 0
  const app = await build(t, (instance) => {
    instance.get('/players/:id', { config: { resilience: { flag: 'player_lookup', breaker: 'database' } } }, async () => { calls++; return 'ok' })
  }, { flags: { defaults: { player_lookup: false } } })
  const response = await app.inject('/players/1')
  t.equal(response.statusCode, 503)
  t.equal(response.json().code, 'FST_RESILIENCE_FEATURE_DISABLED')
  t.equal(calls, 0)
  t.same(app.breaker('database').toJSON().window, { calls: 0, failures: 0 }, 'the breaker saw no call')
  t.notMatch(await app.metricsRegistry.metrics(), /circuit_breaker_calls_total\{name="database"/)
})

test('a handler that already sent its reply and then threw is not re-run, nor replaced by the fallback', async (t) => {
  let calls = 0
  const logs = captureLogs()
  const app = Fastify({ logger: { level: 'error', stream: logs.stream } })
  t.teardown(() => app.close())
  await app.register(resilience, { retry: { jitter: 'none', initialDelayMs: 1 } })
  app.get('/sent', { config: { resilience: { retry: { maxRetries: 3 }, fallback: () => 'fallback' } } }, async (_request, reply) => {
    calls++
    await reply.send('already answered')
    throw unavailable()
  })
  await app.ready()
  const response = await app.inject('/sent')
  t.equal(response.body, 'already answered')
  t.equal(calls, 1)
})

test('POST and PATCH are not retried unless allowNonIdempotent is set', async (t) => {
  for (const method of ['POST', 'PATCH'] as const) {
    const calls = { plain: 0, allowed: 0 }
    const app = await build(t, (instance) => {
      instance.route({ method, url: '/plain', config: { resilience: { retry: { maxRetries: 2 } } }, handler: async () => { calls.plain++; throw unavailable() } })
      instance.route({ method, url: '/allowed', config: { resilience: { retry: { maxRetries: 2, allowNonIdempotent: true } } }, handler: async () => { calls.allowed++; throw unavailable() } })
    })
    t.equal((await app.inject({ method, url: '/plain' })).statusCode, 503, `${method}: the handler's 503`)
    t.equal(calls.plain, 1, `${method}: run once, not retried`)
    const allowed = await app.inject({ method, url: '/allowed' })
    t.equal(calls.allowed, 3, `${method} with allowNonIdempotent: retried`)
    t.equal(allowed.json().code, 'FST_RESILIENCE_RETRY_EXHAUSTED')
  }
})

test('the idempotent methods GET, HEAD, OPTIONS, PUT and DELETE are retried', async (t) => {
  const methods = ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'] as const
  const calls: Record<string, number> = {}
  const app = await build(t, (instance) => {
    for (const method of methods) {
      calls[method] = 0
      instance.route({ method, url: `/${method.toLowerCase()}`, config: { resilience: { retry: { maxRetries: 2 } } }, handler: async () => { calls[method]++; throw unavailable() } })
    }
  })
  for (const method of methods) {
    const response = await app.inject({ method, url: `/${method.toLowerCase()}` })
    t.equal(calls[method], 3, `${method}: the first call and two retries`)
    t.equal(response.statusCode, 503, `${method}: answered once the retries were spent`)
  }
})

test('routes without pipeline options are left as they are, with a signal that never aborts', async (t) => {
  let signal: AbortSignal | undefined
  const handler = async (request: { attemptSignal: AbortSignal }): Promise<string> => { signal = request.attemptSignal; return 'plain' }
  const app = await build(t, (instance) => {
    instance.get('/plain', handler)
    instance.get('/flag-only', { config: { resilience: { flag: 'anything' } } }, handler)
  })
  t.equal((await app.inject('/plain')).body, 'plain')
  t.equal(signal?.aborted, false)
  t.equal(app.hasRoute({ method: 'GET', url: '/flag-only' }), true)
  t.equal((await app.inject('/flag-only')).body, 'plain')
})

test('bad route options fail at ready() naming the route and the option', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [{ timeoutMs: -1 }, /^fastify-resilience-route-policy: route "GET \/x": "config.resilience.timeoutMs" must be a number >= 1 \(got -1\)$/],
    [{ retries: 2 }, /route "GET \/x": unknown option "config.resilience.retries" \(known options: flag, shed, timeoutMs, retry, breaker, fallback\)/],
    [{ retry: 'yes' }, /route "GET \/x": "config.resilience.retry" must be an object or false \(got "yes"\)/],
    [{ retry: { maxRetries: -1 } }, /route "GET \/x": "config.resilience.retry.maxRetries" must be a non-negative integer \(got -1\)/],
    [{ retry: { allowNonIdempotent: 'yes' } }, /"config.resilience.retry.allowNonIdempotent" must be a boolean \(got "yes"\)/],
    [{ breaker: 42 }, /route "GET \/x": "config.resilience.breaker" must be a breaker name or \{ name, ...options \} \(got 42\)/],
    [{ breaker: { name: 'db', failureRatio: 2 } }, /route "GET \/x": "config.resilience.breaker": .*failureRatio" must be a number from 0 to 1 \(got 2\)/],
    [{ fallback: 'default' }, /"config.resilience.fallback" must be a function \(got "default"\)/]
  ]
  for (const [options, message] of cases) {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(resilience)
    app.register(async (scope) => { scope.get('/x', { config: { resilience: options as never } }, async () => 'x') })
    await t.rejects(async () => { await app.ready() }, { name: 'TypeError', message }, JSON.stringify(options))
  }
})

test('options that need a plugin that is not registered fail at ready()', async (t) => {
  const cases: Array<[ResilienceOptions, unknown, RegExp]> = [
    [{ retry: false }, { retry: {} }, /"config.resilience.retry" needs the retry plugin, registered before the routes/],
    [{ breaker: false }, { breaker: 'db' }, /"config.resilience.breaker" needs the breaker plugin, registered before the routes/],
    [{ flags: false }, { flag: 'x' }, /"config.resilience.flag" needs the flags plugin, registered before the routes/]
  ]
  for (const [parts, options, message] of cases) {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(resilience, parts)
    app.register(async (scope) => { scope.get('/x', { config: { resilience: options as never } }, async () => 'x') })
    await t.rejects(async () => { await app.ready() }, { name: 'TypeError', message }, JSON.stringify(options))
  }
})

test('the umbrella plugin registers every part, or only those not set to false', async (t) => {
  const all = Fastify()
  t.teardown(() => all.close())
  await all.register(resilience, { metrics: { endpoint: '/internal/metrics' }, flags: { defaults: { x: true } } })
  await all.ready()
  for (const decorator of ['metricsRegistry', 'loadShedding', 'flags', 'breaker', 'retry', 'fallback']) {
    t.ok(all.hasDecorator(decorator), `${decorator} is there`)
  }
  t.equal((await all.inject('/internal/metrics')).statusCode, 200)

  const some = Fastify()
  t.teardown(() => some.close())
  await some.register(resilience, { metrics: false, loadShedding: false, flags: false, fallback: false })
  some.get('/x', { config: { resilience: { breaker: 'db', retry: { maxRetries: 1 } } } }, async () => 'works')
  await some.ready()
  t.equal((await some.inject('/x')).body, 'works')
  t.equal(some.hasDecorator('flags'), false)
  t.equal(some.hasDecorator('loadShedding'), false)
  t.equal(some.hasDecorator('fallback'), false)
  t.equal((await some.inject('/metrics')).statusCode, 404)

  const bad = Fastify()
  t.teardown(() => bad.close())
  await t.rejects(async () => { await bad.register(resilience, { breakers: {} } as never) }, { name: 'TypeError', message: /^fastify-resilience: unknown option "breakers"/ })
})

test('the route pipeline works with the plugins registered one by one', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(breaker)
  await app.register(retry, { jitter: 'none', initialDelayMs: 1 })
  await app.register(routePolicy)
  let calls = 0
  app.get('/x', { config: { resilience: { breaker: 'db', retry: { maxRetries: 1 } } } }, async () => { if (++calls === 1) throw unavailable(); return 'second' })
  t.equal((await app.inject('/x')).body, 'second')

  const twice = Fastify()
  t.teardown(() => twice.close())
  await twice.register(routePolicy)
  await t.rejects(async () => { await twice.register(routePolicy) }, /fastify-resilience-route-policy has already been registered/)
})

test('an attempt that fails because the client went away does not count against the breaker', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(resilience, { metrics: false, loadShedding: false, flags: false })
  const errorsSeen: string[] = []
  const failedOnce = { watching: deferred(), plain: deferred(), normal: deferred() }
  app.addHook('onError', async (request) => {
    const path = request.url.slice(1) as keyof typeof failedOnce
    errorsSeen.push(path)
    failedOnce[path].resolve()
  })
  const breakerOptions = { name: 'gone', minimumCalls: 1, failureRatio: 0.5 }
  // Reads its signal: the pipeline learns of the disconnect from its watcher.
  app.get('/watching', { config: { resilience: { breaker: breakerOptions, retry: { maxRetries: 1 } } } }, async (request) => {
    const signal = request.attemptSignal
    await new Promise((resolve) => signal.addEventListener('abort', resolve))
    throw unavailable()
  })
  // Never reads it: the pipeline sees a destroyed, unfinished response.
  app.get('/plain', { config: { resilience: { breaker: breakerOptions } } }, async (request, reply) => {
    await new Promise((resolve) => reply.raw.once('close', resolve))
    throw unavailable()
  })
  app.get('/normal', { config: { resilience: { breaker: breakerOptions } } }, async () => { throw unavailable() })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  for (const path of ['/watching', '/plain']) {
    const client = httpRequest({ host: '127.0.0.1', port, path, agent: false })
    client.on('error', () => {})
    client.end()
    client.on('socket', (socket) => socket.once('connect', () => setImmediate(() => client.destroy())))
    await within(`the error of ${path} after its client disconnected`, failedOnce[path.slice(1) as keyof typeof failedOnce].promise)
  }
  t.same(app.breaker('gone').toJSON().window, { calls: 0, failures: 0 }, 'neither failure counted')
  t.equal(app.breaker('gone').state, 'closed')
  t.equal((await get(port, '/normal')).status, 503)
  await failedOnce.normal.promise
  t.equal(app.breaker('gone').state, 'open', 'while a client that waits for the same failure opens it')
  t.same(errorsSeen, ['watching', 'plain', 'normal'])
})

test('one reader of config.resilience: a typo fails at start-up whichever plugins are registered', async (t) => {
  for (const [name, register] of [
    ['flags alone', async (app: FastifyInstance) => { await app.register(flags) }],
    ['load shedding alone', async (app: FastifyInstance) => { await app.register(loadShedding) }]
  ] as const) {
    const app = Fastify()
    t.teardown(() => app.close())
    await register(app)
    t.throws(() => app.get('/x', { config: { resilience: { shed: { priority: 'critical' }, retries: 2 } as never } }, async () => 'x'),
      { name: 'TypeError', message: /^fastify-resilience: route "GET \/x": unknown option "config.resilience.retries" \(known options: flag, shed, timeoutMs, retry, breaker, fallback\)/ }, name)
  }
})
