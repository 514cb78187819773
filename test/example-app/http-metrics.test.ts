// The example app's /metrics carries what every dashboard starts with: the
// request histogram by route pattern and status, and Node.js process metrics,
// next to the suite's own series, in one registry.
import type { FastifyInstance } from 'fastify'
import { test } from 'tap'
import { buildApp } from '../../example-app/app.js'
import type { AppOptions } from '../../example-app/app.js'
import { promtoolCheck } from '../fixtures/promtool.js'
import { playersDatabase } from './fixtures/players-database.js'

interface Teardown { teardown: (fn: () => unknown) => void }

async function players (t: Teardown, options: Partial<AppOptions> = {}): Promise<FastifyInstance> {
  const app = await buildApp({ databaseUrl: await playersDatabase(t, 20), ...options })
  t.teardown(() => app.close())
  await app.ready()
  return app
}

/** The value of the sample whose line starts with `series` (name and labels as exported), if any. */
function sample (exposition: string, series: string): number | undefined {
  const line = exposition.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

test('http_request_duration_seconds counts each answer by method, route pattern and status, never by raw URL', async (t) => {
  const app = await players(t)
  for (const url of ['/players/1', '/players/2', '/players/abc', '/no/such/path/12345', '/leaderboard?limit=3']) await app.inject(url)
  await app.inject({ method: 'PUT', url: '/players/3/score', payload: { score: 7 } })
  await app.inject('/metrics')
  const body = (await app.inject('/metrics')).body

  t.equal(sample(body, 'http_request_duration_seconds_count{method="GET",route="/players/:id",status_code="200"}'), 2)
  t.equal(sample(body, 'http_request_duration_seconds_count{method="GET",route="/players/:id",status_code="400"}'), 1)
  t.equal(sample(body, 'http_request_duration_seconds_count{method="PUT",route="/players/:id/score",status_code="200"}'), 1)
  t.equal(sample(body, 'http_request_duration_seconds_count{method="GET",route="/leaderboard",status_code="200"}'), 1)
  t.equal(sample(body, 'http_request_duration_seconds_count{method="GET",route="__unknown__",status_code="404"}'), 1, 'unmatched URLs share one route label')
  t.ok((sample(body, 'http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/players/:id",status_code="200"}') ?? 0) === 2, 'a histogram with buckets')
  t.notMatch(body, /route="\/players\/1"|no\/such\/path|limit=3/, 'no raw URL in any label')
  t.notMatch(body, /route="\/metrics"/, 'scrapes are not counted as traffic')
  t.notMatch(body, /http_request_summary_seconds/, 'no summary next to the histogram')

  t.match(body, /^process_cpu_user_seconds_total \d/m, 'Node.js process metrics')
  t.match(body, /^nodejs_eventloop_lag_p99_seconds \d/m)
  t.match(body, /^circuit_breaker_state\{name="database"\} 0$/m, 'the suite\'s metrics in the same registry')
  t.match(body, /^fallback_total\{name="player",tier="primary"\} 2$/m)

  // promtool exits 3 on lint complaints alone: the only ones allowed are
  // about prom-client's own default gauges named *_total.
  const check = await promtoolCheck(body)
  t.not(check.code, 1, `promtool parses it: ${check.output}`)
  const complaints = check.output.split('\n').filter((line) => line.trim() !== '')
  t.same(complaints.filter((line) => !/^nodejs_active_\w+_total non-counter metrics should not have "_total" suffix$/.test(line)), [], 'promtool finds nothing else to lint')
})

test('requests refused by load shedding are counted as the 503s they are', async (t) => {
  const app = await players(t, { maxConcurrent: 2 })
  const statuses = (await Promise.all(Array.from({ length: 12 }, async (_, i) => await app.inject(`/players/${1 + i}`)))).map((r) => r.statusCode)
  const refused = statuses.filter((status) => status === 503).length
  t.ok(refused > 0, `some requests were shed: ${statuses.join(' ')}`)
  const body = (await app.inject('/metrics')).body
  t.equal(sample(body, 'http_request_duration_seconds_count{method="GET",route="/players/:id",status_code="503"}'), refused)
  const shedded = body.split('\n').filter((line) => line.startsWith('requests_shedded_total{')).reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0)
  t.equal(shedded, refused, 'as many as load shedding counted')
})

test('two example apps in one process keep their HTTP metrics apart, away from prom-client\'s global registry', async (t) => {
  const { register: globalRegistry } = await import('prom-client')
  const first = await players(t)
  const second = await players(t)
  await first.inject('/players/1')
  const firstBody = (await first.inject('/metrics')).body
  const secondBody = (await second.inject('/metrics')).body
  t.equal(sample(firstBody, 'http_request_duration_seconds_count{method="GET",route="/players/:id",status_code="200"}'), 1)
  t.equal(sample(secondBody, 'http_request_duration_seconds_count{method="GET",route="/players/:id",status_code="200"}'), undefined)
  t.equal(globalRegistry.getSingleMetric('http_request_duration_seconds'), undefined)
  t.equal(globalRegistry.getSingleMetric('http_request_summary_seconds'), undefined)
})
