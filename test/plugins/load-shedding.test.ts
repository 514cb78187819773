import { Agent, request as httpRequest } from 'node:http'
import { connect } from 'node:net'
import Fastify from 'fastify'
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import { test } from 'tap'
import { loadShedding, metrics } from '../../plugins/index.js'
import type { LoadSheddingOptions } from '../../plugins/load-shedding.js'
import { deferred } from '../fixtures/clock.js'
import { get } from '../fixtures/http.js'
import { waitFor } from '../fixtures/wait.js'
import { captureLogs } from '../fixtures/logs.js'

interface Teardown { teardown: (fn: () => unknown) => void }

async function listening (t: Teardown, options: LoadSheddingOptions, routes: (app: FastifyInstance) => void, server: FastifyServerOptions = {}): Promise<{ app: FastifyInstance, port: number }> {
  const app = Fastify(server)
  t.teardown(() => app.close())
  await app.register(metrics)
  await app.register(loadShedding, options)
  routes(app)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  return { app, port: typeof address === 'object' && address !== null ? address.port : 0 }
}

async function metricValue (port: number, line: RegExp): Promise<number | undefined> {
  const body = (await get(port, '/metrics')).body
  const match = body.split('\n').find((l) => line.test(l))
  return match === undefined ? undefined : Number(match.split(' ').at(-1))
}

test('with a limit of 10 and 50 concurrent slow requests at most 10 handlers run; 40 get 503 with Retry-After', async (t) => {
  const gate = deferred()
  let running = 0
  let mostRunning = 0
  const { app, port } = await listening(t, { limit: 'static', maxConcurrent: 10, priorityShares: { normal: 1, sheddable: 1 } }, (instance) => {
    instance.get('/slow', async () => {
      running++
      mostRunning = Math.max(mostRunning, running)
      await gate.promise
      running--
      return { ok: true }
    })
  })
  const responses: Array<Awaited<ReturnType<typeof get>>> = []
  const all = Array.from({ length: 50 }, async () => { const response = await get(port, '/slow'); responses.push(response); return response })
  await waitFor('10 handlers running and 40 refusals', () => running === 10 && responses.length === 40)
  t.equal(app.loadShedding.inFlight, 10)
  t.ok(app.loadShedding.isOverloaded())
  for (const refused of responses) {
    t.equal(refused.status, 503)
    t.equal(refused.headers['retry-after'], '5')
    t.match(refused.headers['content-type'], /^application\/json/)
    t.same(JSON.parse(refused.body), { statusCode: 503, code: 'FST_RESILIENCE_OVERLOADED', error: 'Service Unavailable', message: 'service overloaded, try again later' })
  }
  gate.resolve()
  const finished = await Promise.all(all)
  t.equal(finished.filter((r) => r.status === 200).length, 10)
  t.equal(mostRunning, 10, 'never more than 10 handlers at once')
  await waitFor('every slot released', () => app.loadShedding.inFlight === 0)
  t.equal(await metricValue(port, /^requests_shedded_total\{reason="concurrency"\}/), 40)
  t.equal(await metricValue(port, /^requests_in_flight /), 0)
})

test('after 10 000 mixed requests (successes, errors, 404s, aborts, timeouts) inFlight is back to exactly 0', async (t) => {
  const started = new Map<string, () => void>()
  let lowest = 0
  const { app, port } = await listening(t, { limit: 'static', maxConcurrent: 10_000 }, (instance) => {
    instance.get('/ok', async () => ({ ok: true }))
    instance.get('/boom', async () => { throw new Error('boom') })
    instance.get('/refused-by-hook', { onRequest: async (_request, reply) => { await reply.code(429).send({ later: true }) } }, async () => 'never')
    instance.get('/slow', async (request, reply) => {
      started.get(request.headers['x-id'] as string)?.()
      // Waits until the client goes away.
      await new Promise((resolve) => reply.raw.once('close', resolve))
      return 'too late'
    })
    instance.post('/upload', async () => 'never: the body never completes')
    instance.addHook('onResponse', async () => { lowest = Math.min(lowest, instance.loadShedding.inFlight) })
  }, { connectionTimeout: 300, logger: false })

  const agent = new Agent({ keepAlive: true, maxSockets: 16 })
  t.teardown(() => agent.destroy())
  const counts = { ok: 0, boom: 0, missing: 0, refused: 0, aborted: 0, timedOut: 0 }
  const one = async (i: number): Promise<void> => {
    const kind = i % 20
    if (kind === 0) {
      // The client disconnects after the handler started.
      const id = `abort-${i}`
      const handlerStarted = new Promise<void>((resolve) => started.set(id, resolve))
      await new Promise<void>((resolve) => {
        const request = httpRequest({ host: '127.0.0.1', port, path: '/slow', agent: false, headers: { 'x-id': id } })
        request.on('error', () => resolve())
        request.end()
        handlerStarted.then(() => { request.destroy(); resolve() }, () => {})
      })
      started.delete(id)
      counts.aborted++
    } else if (kind === 1 && i % 200 === 1) {
      // A body that never completes: the server's connection timeout ends it.
      await new Promise<void>((resolve) => {
        const socket = connect(port, '127.0.0.1', () => socket.write('POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a":'))
        socket.on('close', () => resolve())
        socket.on('error', () => {})
      })
      counts.timedOut++
    } else if (kind < 8) {
      t.equal((await get(port, '/ok', { agent })).status, 200) || t.fail('ok')
      counts.ok++
    } else if (kind < 12) {
      const status = (await get(port, '/boom', { agent })).status
      if (status !== 500) t.fail(`boom answered ${status}`)
      counts.boom++
    } else if (kind < 16) {
      const status = (await get(port, '/nowhere', { agent })).status
      if (status !== 404) t.fail(`404 answered ${status}`)
      counts.missing++
    } else {
      const status = (await get(port, '/refused-by-hook', { agent })).status
      if (status !== 429) t.fail(`hook refusal answered ${status}`)
      counts.refused++
    }
  }
  let next = 0
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < 10_000) await one(next++)
  }))
  await waitFor('every slot to be released', () => app.loadShedding.inFlight === 0)
  t.equal(app.loadShedding.inFlight, 0, `after ${JSON.stringify(counts)}`)
  t.equal(lowest, 0, 'the counter never went below 0')
  t.equal(Object.values(counts).reduce((a, b) => a + b, 0), 10_000)
  t.ok(counts.aborted >= 400 && counts.timedOut >= 40, 'aborts and timeouts were really exercised')
})

test('under overload sheddable requests are refused first, then normal, then critical; shed: false always answers', async (t) => {
  const gate = deferred()
  const { app, port } = await listening(t, { limit: 'static', maxConcurrent: 10, priorityShares: { sheddable: 0.5, normal: 0.8 } }, (instance) => {
    instance.get('/hold', { config: { resilience: { shed: { priority: 'critical' } } } }, async () => { await gate.promise; return 'held' })
    instance.get('/critical', { config: { resilience: { shed: { priority: 'critical' } } } }, async () => 'critical')
    instance.get('/normal', async () => 'normal')
    instance.get('/explicit-normal', { config: { resilience: { shed: {} } } }, async () => 'normal')
    instance.get('/sheddable', { config: { resilience: { shed: { priority: 'sheddable' } } } }, async () => 'sheddable')
    instance.get('/health', { config: { resilience: { shed: false } } }, async () => 'alive')
  })
  const held: Array<Promise<unknown>> = []
  const hold = async (count: number): Promise<void> => {
    for (let i = 0; i < count; i++) held.push(get(port, '/hold'))
    await waitFor(`${held.length} requests held`, () => app.loadShedding.inFlight === held.length)
  }
  const status = async (path: string): Promise<number> => (await get(port, path)).status

  await hold(5)
  t.equal(await status('/sheddable'), 503, 'at 5 of 10: sheddable refused')
  t.equal(await status('/normal'), 200)
  t.equal(await status('/explicit-normal'), 200)
  t.equal(await status('/critical'), 200)
  await hold(3)
  t.equal(await status('/sheddable'), 503)
  t.equal(await status('/normal'), 503, 'at 8 of 10: normal refused too')
  t.equal(await status('/critical'), 200, 'critical still admitted')
  await hold(2)
  t.equal(await status('/critical'), 503, 'at 10 of 10: everything refused')
  t.equal(await status('/health'), 200, 'shed: false always answers')
  t.equal((await get(port, '/metrics')).status, 200, '/metrics always answers')
  t.equal(await metricValue(port, /^requests_shedded_total\{reason="priority"\}/), 3)
  t.equal(await metricValue(port, /^requests_shedded_total\{reason="concurrency"\}/), 1)
  t.equal(await metricValue(port, /^requests_in_flight /), 10)
  gate.resolve()
  await Promise.all(held)
})

test('blocking the event loop beyond the threshold sheds with reason event_loop_delay, and stops once it recovers', async (t) => {
  // Samples 1 s apart: once seen, the pressure holds long enough to send requests into it,
  // even on a busy machine.
  const { app, port } = await listening(t, { maxEventLoopDelayMs: 100, sampleIntervalMs: 1000 }, (instance) => {
    instance.get('/work', async () => 'done')
    instance.get('/critical', { config: { resilience: { shed: { priority: 'critical' } } } }, async () => 'critical')
  })
  t.equal(app.loadShedding.pressure, undefined)
  // Longer than a sample interval, so the next sample is late by at least 500 ms.
  const until = Date.now() + 1500
  while (Date.now() < until) { /* block the event loop */ }
  await waitFor('the sampler to see the delay', () => app.loadShedding.pressure !== undefined)
  t.equal(app.loadShedding.pressure, 'event_loop_delay')
  t.ok(app.loadShedding.isOverloaded())
  const [refused, admitted] = await Promise.all([get(port, '/work'), get(port, '/critical')])
  t.equal(refused.status, 503)
  t.equal(admitted.status, 200, 'critical requests are not shed for process pressure')
  await waitFor('the loop to recover', () => app.loadShedding.pressure === undefined)
  t.equal(await metricValue(port, /^requests_shedded_total\{reason="event_loop_delay"\}/), 1)
  t.equal((await get(port, '/work')).status, 200)
})

test('high event-loop utilization sheds with reason event_loop_utilization', async (t) => {
  const { app } = await listening(t, { maxEventLoopUtilization: 0.5, sampleIntervalMs: 100 }, () => {})
  // Keep the loop busy for most of several sample periods.
  const busyUntil = Date.now() + 1000
  await waitFor('the sampler to see the utilization', async () => {
    const spin = Date.now() + 40
    while (Date.now() < spin && Date.now() < busyUntil) { /* busy */ }
    return app.loadShedding.pressure === 'event_loop_utilization'
  }, 20_000)
  t.equal(app.loadShedding.pressure, 'event_loop_utilization')
  await waitFor('the loop to recover', () => app.loadShedding.pressure === undefined)
})

test('routes declared before the plugin still get their priority', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.get('/early-sheddable', { config: { resilience: { shed: { priority: 'sheddable' } } } }, async () => 'x')
  app.get('/early-plain', async () => 'x')
  app.get('/early-unshed', { config: { resilience: { shed: false } } }, async () => 'x')
  await app.register(loadShedding, { priorityShares: { sheddable: 0 } })
  t.equal((await app.inject('/early-sheddable')).statusCode, 503, 'sheddable is always refused with a 0 share')
  t.equal((await app.inject('/early-sheddable')).statusCode, 503, 'also the second time (remembered)')
  t.equal((await app.inject('/early-plain')).statusCode, 200)
  t.equal((await app.inject('/early-unshed')).statusCode, 200)
})

test('a limit of 1 still admits one request of every priority', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(loadShedding, { maxConcurrent: 1 })
  app.get('/normal', async () => 'ok')
  app.get('/sheddable', { config: { resilience: { shed: { priority: 'sheddable' } } } }, async () => 'ok')
  t.equal((await app.inject('/normal')).statusCode, 200)
  await waitFor('the slot', () => app.loadShedding.inFlight === 0)
  t.equal((await app.inject('/sheddable')).statusCode, 200)
})

test('inject requests are counted and released too', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(loadShedding, { limit: 'static', maxConcurrent: 3 })
  const gate = deferred()
  // critical: its share is the whole limit, so all 3 slots are open to it.
  app.get('/', { config: { resilience: { shed: { priority: 'critical' } } } }, async () => { await gate.promise; return 'ok' })
  const held = [app.inject('/'), app.inject('/'), app.inject('/')]
  await waitFor('three injected requests in flight', () => app.loadShedding.inFlight === 3)
  const refused = await app.inject('/')
  t.equal(refused.statusCode, 503, 'a fourth is refused: injected requests take real slots')
  t.equal(refused.json().code, 'FST_RESILIENCE_OVERLOADED')
  gate.resolve()
  t.same((await Promise.all(held)).map((response) => response.statusCode), [200, 200, 200])
  await waitFor('every slot released', () => app.loadShedding.inFlight === 0)
})

test('errorResponseBuilder shapes the refusal, which goes through the app\'s error handler with Retry-After', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(metrics)
  const seen: Array<{ reason: string, retryAfterSeconds: number, url: string }> = []
  await app.register(loadShedding, {
    maxConcurrent: 1,
    retryAfterSeconds: 7,
    errorResponseBuilder: (request, context) => {
      seen.push({ ...context, url: request.url })
      return Object.assign(new Error(`too busy (${context.reason})`), { statusCode: 429, code: 'BUSY' })
    }
  })
  app.setErrorHandler((error: Error & { statusCode?: number, code?: string }, _request, reply) => {
    return reply.code(error.statusCode ?? 500).send({ shaped: true, code: error.code, message: error.message })
  })
  const gate = deferred()
  app.get('/slow', { config: { resilience: { shed: { priority: 'critical' } } } }, async () => { await gate.promise; return 'ok' })
  const held = app.inject('/slow')
  await waitFor('one request in flight', () => app.loadShedding.inFlight === 1)
  const refused = await app.inject('/slow?second')
  t.equal(refused.statusCode, 429)
  t.same(refused.json(), { shaped: true, code: 'BUSY', message: 'too busy (concurrency)' })
  t.equal(refused.headers['retry-after'], '7')
  t.same(seen, [{ reason: 'concurrency', retryAfterSeconds: 7, url: '/slow?second' }])
  t.equal(app.loadShedding.inFlight, 1, 'the refusal took no slot')
  gate.resolve()
  t.equal((await held).statusCode, 200)
  t.match((await app.inject('/metrics')).body, /^requests_shedded_total\{reason="concurrency"\} 1$/m)
})

test('bad options fail with a TypeError naming the option', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [{ maxConcurrent: 0 }, /^fastify-resilience-load-shedding: "maxConcurrent" must be an integer >= 1 \(got 0\)$/],
    [{ maxConcurrent: 10.5 }, /"maxConcurrent" must be an integer >= 1 \(got 10.5\)/],
    [{ priorityShares: { sheddable: 2 } }, /"priorityShares.sheddable" must be a number from 0 to 1 \(got 2\)/],
    [{ priorityShares: { sheddable: 0.9, normal: 0.5 } }, /"priorityShares" must be ordered sheddable <= normal <= critical \(got an object\)/],
    [{ priorityShares: { low: 0.5 } }, /unknown option "priorityShares.low"/],
    [{ retryAfterSeconds: 0 }, /"retryAfterSeconds" must be an integer >= 1 \(got 0\)/],
    [{ maxEventLoopDelayMs: -1 }, /"maxEventLoopDelayMs" must be a number >= 1 \(got -1\)/],
    [{ maxEventLoopUtilization: 1.5 }, /"maxEventLoopUtilization" must be a number from 0 to 1 \(got 1.5\)/],
    [{ sampleIntervalMs: 1 }, /"sampleIntervalMs" must be a number >= 10 \(got 1\)/],
    [{ errorResponseBuilder: 'busy' }, /"errorResponseBuilder" must be a function \(got "busy"\)/],
    [{ limit: 10 }, /"limit" must be one of "static", "adaptive" \(got 10\)/],
    [{ limit: 'static', adaptive: {} }, /^fastify-resilience-load-shedding: "adaptive" must be left out with limit: "static" \(got an object\)$/],
    [{ adaptive: { maxLimit: 2000 } }, /"adaptive.maxLimit" must be an integer from 1 to 1000 \(got 2000\)/],
    [{ maxConcurrent: 50, adaptive: { minLimit: 60 } }, /"adaptive.minLimit" must be an integer from 1 to 50 \(got 60\)/],
    [{ adaptive: { rttTolerance: 0.5 } }, /"adaptive.rttTolerance" must be a number >= 1 \(got 0.5\)/],
    [{ adaptive: { smoothing: 0 } }, /"adaptive.smoothing" must be a number from 0.01 to 1 \(got 0\)/],
    [{ adaptive: { probeIntervalMs: 10 } }, /"adaptive.probeIntervalMs" must be a number >= 1000 \(got 10\)/],
    [{ adaptive: { minSamples: 0 } }, /"adaptive.minSamples" must be an integer >= 1 \(got 0\)/],
    [{ adaptive: { windowMs: 0 } }, /"adaptive.windowMs" must be a number >= 1 \(got 0\)/],
    [{ adaptive: { initialLimit: 0.5 } }, /"adaptive.initialLimit" must be an integer >= 1 \(got 0.5\)/],
    [{ adaptive: { min: 1 } }, /unknown option "adaptive.min"/]
  ]
  for (const [options, message] of cases) {
    const app = Fastify()
    t.teardown(() => app.close())
    await t.rejects(async () => { await app.register(loadShedding, options as LoadSheddingOptions) }, { name: 'TypeError', message }, JSON.stringify(options))
  }
  for (const [shed, message] of [
    ['low', /^fastify-resilience-load-shedding: route "GET \/x": "config.resilience.shed" must be \{ priority \} or false \(got "low"\)$/],
    [{ priority: 'urgent' }, /"config.resilience.shed.priority" must be one of "critical", "normal", "sheddable" \(got "urgent"\)/],
    [{ level: 'critical' }, /unknown option "config.resilience.shed.level"/]
  ] as const) {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(loadShedding)
    app.register(async (scope) => { scope.get('/x', { config: { resilience: { shed: shed as never } } }, async () => 'x') })
    await t.rejects(async () => { await app.ready() }, { name: 'TypeError', message }, JSON.stringify(shed))
  }
})

test('registering the load shedding plugin twice in one scope fails loudly', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(loadShedding)
  await t.rejects(async () => { await app.register(loadShedding) }, /fastify-resilience-load-shedding has already been registered/)
})

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

test('the adaptive limit is the default: loadShedding() measures its baseline at minLimit (5), where limit: "static" admits maxConcurrent', async (t) => {
  for (const [options, limit, admitted] of [[{}, 5, 4], [{ limit: 'static' }, 1000, 950]] as const) {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(loadShedding, options)
    const gate = deferred()
    app.get('/', async () => { await gate.promise; return 'ok' })
    t.equal(app.loadShedding.limit, limit, `${JSON.stringify(options)}: limit ${limit}`)
    // Normal priority is admitted up to floor(0.95 × limit).
    const held = Array.from({ length: Math.min(admitted, 4) }, async () => await app.inject('/'))
    await waitFor('the requests in flight', () => app.loadShedding.inFlight === held.length)
    const next = app.inject('/')
    if (admitted === 4) t.equal((await next).statusCode, 503, 'the default refuses the fifth while measuring its baseline')
    gate.resolve()
    if (admitted !== 4) t.equal((await next).statusCode, 200, 'the static default admits it')
    t.same((await Promise.all(held)).map((response) => response.statusCode), held.map(() => 200))
  }
})

test('adaptive: the limit starts at minLimit to measure the baseline, then learns from successful responses only (shed: false routes do not count), and probes again after probeIntervalMs', async (t) => {
  const { app, port } = await listening(t, { limit: 'adaptive', adaptive: { minSamples: 3, windowMs: 1, probeIntervalMs: 1000 } }, (instance) => {
    instance.get('/ok', async () => { await sleep(2); return 'ok' })
    instance.get('/boom', async () => { throw new Error('boom') })
    instance.get('/missing', async (_request, reply) => await reply.code(404).send())
    instance.get('/health', { config: { resilience: { shed: false } } }, async () => 'ok')
  })
  t.equal(app.loadShedding.limit, 5, 'measuring at minLimit')
  t.equal(await metricValue(port, /^concurrency_limit /), 5)
  for (let i = 0; i < 10; i++) {
    t.equal((await get(port, '/boom')).status, 500)
    t.equal((await get(port, '/missing')).status, 404)
    t.equal((await get(port, '/health')).status, 200)
  }
  t.equal(app.loadShedding.limit, 5, 'failures, 4xx and uncounted routes teach nothing')
  for (let i = 0; i < 3; i++) t.equal((await get(port, '/ok')).status, 200)
  t.equal(app.loadShedding.limit, 20, 'three successes closed the first window: back to initialLimit')
  t.equal(await metricValue(port, /^concurrency_limit /), 20)
  await sleep(1200)
  for (let i = 0; i < 3; i++) t.equal((await get(port, '/ok')).status, 200)
  t.equal(app.loadShedding.limit, 5, 'a window after probeIntervalMs runs at minLimit again')
  for (let i = 0; i < 3; i++) t.equal((await get(port, '/ok')).status, 200)
  t.ok(app.loadShedding.limit > 5, `and the learnt limit is restored (${app.loadShedding.limit})`)
  t.equal(app.loadShedding.inFlight, 0)
})

test('adaptive: priorities apply their shares to the learnt limit, not to maxConcurrent', async (t) => {
  const gate = deferred()
  let running = 0
  const { app, port } = await listening(t, { maxConcurrent: 100, adaptive: { minLimit: 10, initialLimit: 10, maxLimit: 10, minSamples: 1, windowMs: 1 } }, (instance) => {
    instance.get('/quick', async () => 'ok')
    instance.get('/later', { config: { resilience: { shed: { priority: 'sheddable' } } } }, async () => { running++; await gate.promise; running--; return 'done' })
  })
  t.equal((await get(port, '/quick')).status, 200)
  t.equal(app.loadShedding.limit, 10)
  const held = Array.from({ length: 8 }, async () => await get(port, '/later'))
  await waitFor('8 sheddable requests running', () => running === 8)
  const refused = await get(port, '/later')
  t.equal(refused.status, 503, 'the 9th sheddable request is refused: 0.8 of the learnt 10')
  t.equal(await metricValue(port, /^requests_shedded_total\{reason="priority"\}/), 1)
  t.equal((await get(port, '/quick')).status, 200, 'a normal request still fits (0.95 of 10)')
  gate.resolve()
  await Promise.all(held)
  await waitFor('every slot released', () => app.loadShedding.inFlight === 0)
})

test('adaptive: under concurrent load the limit doubles and says so once at info; after 2 000 mixed requests and aborts no slot leaks', async (t) => {
  const { stream, lines } = captureLogs()
  const { app, port } = await listening(t, { adaptive: { minLimit: 2, initialLimit: 2, minSamples: 1, windowMs: 1, rttTolerance: 4 } }, (instance) => {
    instance.get('/work', async () => { await sleep(5); return 'ok' })
    instance.get('/boom', async () => { await sleep(1); throw new Error('boom') })
    instance.get('/hang', async (_request, reply) => { await new Promise((resolve) => reply.raw.once('close', resolve)); return 'late' })
  }, { logger: { stream } })
  await get(port, '/work')
  const agent = new Agent({ keepAlive: true, maxSockets: 64 })
  t.teardown(() => agent.destroy())
  for (let round = 0; round < 40 && app.loadShedding.limit < 16; round++) {
    await Promise.all(Array.from({ length: app.loadShedding.limit }, async () => await get(port, '/work', { agent })))
  }
  t.ok(app.loadShedding.limit >= 16, `the limit grew to ${app.loadShedding.limit}`)
  const moves = lines.filter((line) => /adaptive concurrency limit moved/.test(line.msg))
  t.equal(moves.length, 1, 'logged once: rate-limited')
  t.match(moves[0], { level: 30, previousLimit: 2 })
  t.ok((moves[0]?.concurrencyLimit as number) >= 4)
  const paths = ['/work', '/boom', '/hang']
  await Promise.all(Array.from({ length: 2000 }, async (_, i) => {
    const path = paths[i % 3] as string
    if (path !== '/hang') return await get(port, path, { agent }).catch(() => undefined)
    // A client that goes away mid-request.
    await new Promise<void>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => { socket.write('GET /hang HTTP/1.1\r\nHost: x\r\n\r\n'); setTimeout(() => { socket.destroy(); resolve() }, 5) })
      socket.on('error', () => resolve())
    })
  }))
  // A /hang request can reach the server after its client left and hold a slot
  // for a moment, between a read of the counter and a scrape of the gauge:
  // wait until both read 0 together instead of reading each once.
  await t.resolves(waitFor('inFlight and requests_in_flight both back to 0', async () =>
    await metricValue(port, /^requests_in_flight /) === 0 && app.loadShedding.inFlight === 0),
  'no slot leaks: the counter and the gauge come back to 0')
  t.ok(app.loadShedding.limit >= 2 && app.loadShedding.limit <= 1000, `limit ${app.loadShedding.limit}`)
})
