import Fastify from 'fastify'
import fp from 'fastify-plugin'
import { register as globalRegistry, Registry } from 'prom-client'
import { test } from 'tap'
import resilience, { metrics } from '../../plugins/index.js'
import { counter, gauge, histogram, useMetricsRegistry } from '../../plugins/lib/metrics/registry.js'
import { captureLogs } from '../fixtures/logs.js'
import { promtoolCheck } from '../fixtures/promtool.js'
import { uniqueName } from '../fixtures/services.js'

test('serves every metric type in a format the real Prometheus parser accepts', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(metrics, { defaultMetrics: true })
  await app.ready()
  const registry = app.metricsRegistry
  counter(registry, 'circuit_breaker_calls_total', { help: 'Calls through each circuit breaker.', labelNames: ['name', 'result'] })
    .inc({ name: 'database', result: 'success' })
  gauge(registry, 'requests_in_flight', { help: 'Requests being served.' }).set(3)
  histogram(registry, 'operation_retries', { help: 'Retries per operation.', labelNames: ['operation'], buckets: [0, 1, 2, 3, 5, 10] })
    .observe({ operation: 'player_lookup' }, 2)

  const response = await app.inject('/metrics')
  t.equal(response.statusCode, 200)
  t.match(response.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  t.match(response.body, /circuit_breaker_calls_total\{name="database",result="success"\} 1/)
  t.match(response.body, /operation_retries_bucket\{le="2",operation="player_lookup"\} 1/)
  t.match(response.body, /process_cpu_user_seconds_total/, 'default Node.js metrics are collected when asked')

  const { code, output } = await promtoolCheck(response.body)
  // promtool exits 1 on a parse error and 3 on lint complaints only (prom-client
  // names some default gauges *_total); both the parse and the lint pass must not find errors.
  t.not(code, 1, output)
  t.notMatch(output, /error while linting|text format parsing error/, output)
})

/** The metrics table of docs/metrics.md: what dashboards and alerts rely on. */
const SUITE_METRICS: Array<{ name: string, type: 'counter' | 'gauge' | 'histogram', labels: string[] }> = [
  { name: 'circuit_breaker_state', type: 'gauge', labels: ['name'] },
  { name: 'circuit_breaker_calls_total', type: 'counter', labels: ['name', 'result'] },
  { name: 'requests_shedded_total', type: 'counter', labels: ['reason'] },
  { name: 'requests_in_flight', type: 'gauge', labels: [] },
  { name: 'operation_retries', type: 'histogram', labels: ['operation'] },
  { name: 'retry_budget_exhausted_total', type: 'counter', labels: ['operation'] },
  { name: 'fallback_total', type: 'counter', labels: ['name', 'tier'] },
  { name: 'feature_flag_enabled', type: 'gauge', labels: ['flag'] }
]

/** The label names of each sample line of `metric` (with `_bucket`, `_sum` and `_count` for a histogram). */
function sampleLabelNames (exposition: string, metric: string, type: string): Array<{ series: string, labels: string[] }> {
  const series = type === 'histogram' ? [`${metric}_bucket`, `${metric}_sum`, `${metric}_count`] : [metric]
  const samples: Array<{ series: string, labels: string[] }> = []
  for (const line of exposition.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+$/.exec(line)
    if (match === null || !series.includes(match[1] as string)) continue
    const labels = [...(match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"/g)].map((label) => label[1] as string)
    samples.push({ series: match[1] as string, labels: labels.sort() })
  }
  return samples
}

test('the whole suite, each part used once, serves every metric of the design with its type and exact label names', async (t) => {
  for (const prefix of ['', 'players_']) {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(resilience, {
      metrics: { prefix },
      // Sheddable requests get no share: the one below is refused at once.
      loadShedding: { priorityShares: { sheddable: 0 } },
      flags: { defaults: { player_lookup: true } },
      retry: { jitter: 'none', initialDelayMs: 0 }
    })
    app.get('/players/:id', { config: { resilience: { flag: 'player_lookup', breaker: 'database', retry: { maxRetries: 1, operation: 'player_lookup' } } } }, async () => ({ id: 1 }))
    app.get('/recommendations', { config: { resilience: { shed: { priority: 'sheddable' } } } }, async () => [])
    await app.ready()

    t.equal((await app.inject('/players/1')).statusCode, 200, 'flag, breaker and retry: one call')
    t.equal((await app.inject('/recommendations')).statusCode, 503, 'load shedding: one refusal')
    t.same(await app.fallback({ name: 'player', primary: () => 'fresh', fallback: () => 'stale' }), { value: 'fresh', tier: 'primary' }, 'fallback: one answer')
    const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })
    await t.rejects(app.retry(async () => { throw reset }, { operation: 'budgeted', budget: { ratio: 0, minRetriesPerSecond: 0 } }), reset, 'retry budget: one refused retry')

    const response = await app.inject('/metrics')
    t.equal(response.statusCode, 200)
    const body = response.body
    const types = new Map([...body.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]))
    for (const { name, type, labels } of SUITE_METRICS) {
      const fullName = prefix + name
      t.equal(types.get(fullName), type, `type of ${fullName}`)
      const samples = sampleLabelNames(body, fullName, type)
      t.ok(samples.length > 0, `${fullName} has samples`)
      const expected = (series: string): string[] => (series === `${fullName}_bucket` ? [...labels, 'le'] : labels).sort()
      const wrong = samples.filter(({ series, labels: names }) => names.join(',') !== expected(series).join(','))
      t.same(wrong, [], `every sample of ${fullName} has exactly the labels ${JSON.stringify(labels)}`)
    }
    const buckets = [...body.matchAll(new RegExp(`^${prefix}operation_retries_bucket\\{le="([^"]+)",operation="player_lookup"\\}`, 'gm'))].map((m) => m[1])
    t.same(buckets, ['0', '1', '2', '3', '5', '10', '+Inf'], 'operation_retries has the buckets 0 1 2 3 5 10')

    const { code, output } = await promtoolCheck(body)
    t.not(code, 1, output)
    t.notMatch(output, /error while linting|text format parsing error/, output)
  }
})

test('promtool rejects a broken exposition, so the check above can fail', async (t) => {
  const { code, output } = await promtoolCheck('# TYPE broken counter\nbroken{name="x" 1\n')
  t.equal(code, 1, output)
})

test('two apps in one process keep separate registries and never touch the global one', async (t) => {
  const first = Fastify()
  const second = Fastify()
  t.teardown(() => first.close())
  t.teardown(() => second.close())
  await first.register(metrics)
  await second.register(metrics)
  await Promise.all([first.ready(), second.ready()])
  const name = uniqueName('shared_name_total')

  t.not(first.metricsRegistry, second.metricsRegistry)
  t.not(first.metricsRegistry, globalRegistry)
  counter(first.metricsRegistry, name, { help: 'Same name in two apps.' }).inc(5)
  counter(second.metricsRegistry, name, { help: 'Same name in two apps.' }).inc(1)

  t.match((await first.inject('/metrics')).body, new RegExp(`^${name} 5$`, 'm'))
  t.match((await second.inject('/metrics')).body, new RegExp(`^${name} 1$`, 'm'))
  t.equal(globalRegistry.getSingleMetric(name), undefined)
})

test('the same metric asked for twice is created once; another type under that name is refused', async (t) => {
  const registry = new Registry()
  const first = counter(registry, 'fallback_total', { help: 'x', labelNames: ['name', 'tier'] })
  t.equal(counter(registry, 'fallback_total', { help: 'x', labelNames: ['name', 'tier'] }), first)
  t.throws(() => gauge(registry, 'fallback_total', { help: 'x' }), /metric "fallback_total" already exists in the registry with another type/)
})

test('endpoint: null registers no route but still decorates the registry', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(metrics, { endpoint: null })
  await app.ready()
  t.equal(app.hasRoute({ method: 'GET', url: '/metrics' }), false)
  t.equal((await app.inject('/metrics')).statusCode, 404)
  t.ok(app.metricsRegistry instanceof Registry)
})

test('a custom endpoint path is served instead of /metrics', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(metrics, { endpoint: '/internal/prometheus' })
  t.equal((await app.inject('/internal/prometheus')).statusCode, 200)
  t.equal((await app.inject('/metrics')).statusCode, 404)
})

test('with a token, the endpoint answers 401 without or with a wrong token and 200 with the right one', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(metrics, { token: 's3cret-token' })

  const missing = await app.inject('/metrics')
  t.equal(missing.statusCode, 401)
  t.equal(missing.headers['www-authenticate'], 'Bearer')
  t.equal(missing.json().code, 'FST_RESILIENCE_UNAUTHORIZED')
  t.notMatch(missing.body, /# HELP|# TYPE/, 'no metrics leak with the refusal')

  const wrong = await app.inject({ url: '/metrics', headers: { authorization: 'Bearer s3cret-tokem' } })
  t.equal(wrong.statusCode, 401)
  const longer = await app.inject({ url: '/metrics', headers: { authorization: 'Bearer s3cret-token-and-more' } })
  t.equal(longer.statusCode, 401)
  const wrongScheme = await app.inject({ url: '/metrics', headers: { authorization: 'Basic s3cret-token' } })
  t.equal(wrongScheme.statusCode, 401)

  const right = await app.inject({ url: '/metrics', headers: { authorization: 'Bearer s3cret-token' } })
  t.equal(right.statusCode, 200)
})

test('a scrape writes no log line while other routes still log', async (t) => {
  const { stream, lines } = captureLogs()
  const app = Fastify({ logger: { level: 'info', stream } })
  t.teardown(() => app.close())
  await app.register(metrics)
  app.get('/hello', async () => ({ hello: 'world' }))
  await app.ready()
  lines.length = 0

  await app.inject('/metrics')
  t.same(lines, [], 'nothing logged for /metrics')
  await app.inject('/hello')
  t.ok(lines.length > 0, 'an ordinary route logs its request')
})

test('a user-supplied registry and a prefix are used by every metric', async (t) => {
  const registry = new Registry()
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(metrics, { registry, prefix: 'players_' })
  await app.ready()
  t.equal(app.metricsRegistry, registry)
  counter(app.metricsRegistry, 'requests_shedded_total', { help: 'Refused requests.', labelNames: ['reason'] }).inc({ reason: 'overloaded' })
  t.match((await app.inject('/metrics')).body, /^players_requests_shedded_total\{reason="overloaded"\} 1$/m)
  t.ok(registry.getSingleMetric('players_requests_shedded_total'))
})

test('the default metrics honour both the plugin prefix and their own', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(metrics, { prefix: 'svc_', defaultMetrics: { prefix: 'node_' } })
  const body = (await app.inject('/metrics')).body
  t.match(body, /^svc_node_process_cpu_user_seconds_total /m)
})

test('a plugin registered earlier creates the registry that the metrics plugin then serves', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  // What breaker, retry... do: ask for the app's registry before metrics is registered.
  await app.register(fp(async (instance) => {
    counter(useMetricsRegistry(instance), 'early_total', { help: 'Created before the metrics plugin.' }).inc()
  }))
  await app.register(metrics)
  t.match((await app.inject('/metrics')).body, /^early_total 1$/m)
})

test('registering metrics after another plugin created the registry refuses a registry or prefix', async (t) => {
  for (const [options, pattern] of [
    [{ registry: new Registry() }, /fastify-resilience-metrics: "registry" cannot be set because another fastify-resilience plugin was registered first/],
    [{ prefix: 'late_' }, /fastify-resilience-metrics: "prefix" cannot be set to "late_" because another fastify-resilience plugin was registered first/]
  ] as const) {
    const app = Fastify()
    t.teardown(() => app.close())
    useMetricsRegistry(app)
    await t.rejects(async () => { await app.register(metrics, options) }, { name: 'TypeError', message: pattern })
  }
})

test('registering the metrics plugin twice in one scope fails loudly', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(metrics)
  await t.rejects(async () => { await app.register(metrics, { endpoint: '/other' }) }, /fastify-resilience-metrics has already been registered/)
})

test('bad options fail registration with a TypeError naming the option and value', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [{ endpoint: 'metrics' }, /^fastify-resilience-metrics: "endpoint" must be a path starting with "\/", or null \(got "metrics"\)$/],
    [{ endpoint: 42 }, /"endpoint" must be a path starting with "\/", or null \(got 42\)/],
    [{ prefix: 'bad-prefix' }, /"prefix" must be a Prometheus metric name prefix .* \(got "bad-prefix"\)/],
    [{ registry: {} }, /"registry" must be a prom-client Registry \(got an object\)/],
    [{ token: '' }, /"token" must be a non-empty string without spaces \(got ""\)/],
    [{ token: 123 }, /"token" must be a non-empty string without spaces \(got 123\)/],
    [{ defaultMetrics: 'yes' }, /"defaultMetrics" must be a boolean or an options object \(got "yes"\)/],
    [{ defaultMetrics: { prefix: 'bad prefix' } }, /"defaultMetrics.prefix" must be a Prometheus metric name prefix \(got "bad prefix"\)/],
    [{ endpiont: '/metrics' }, /fastify-resilience-metrics: unknown option "endpiont" \(known options: endpoint, registry, prefix, defaultMetrics, token\)/]
  ]
  for (const [options, message] of cases) {
    const app = Fastify()
    t.teardown(() => app.close())
    await t.rejects(async () => { await app.register(metrics, options as never) }, { name: 'TypeError', message }, JSON.stringify(options))
  }
})
