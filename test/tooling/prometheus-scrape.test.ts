// A real Prometheus scrapes the example app every second while PostgreSQL
// hangs on a locked table, then stops, then comes back: every query of the Grafana dashboard
// (read from the JSON, its variables substituted) must return data, the
// dashboard's variables must list the app, and the breaker-open alert of
// alerts.yml must go pending while PostgreSQL is down and end after.
import { mkdtempSync, rmSync } from 'node:fs'
import { Agent, request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { test } from 'tap'
import { buildApp } from '../../example-app/app.js'
import { seedDatabase } from '../../example-app/db/seed.js'
import { startPostgres, startRedis } from '../../local-services/index.js'
import type { PostgresServer } from '../../local-services/index.js'
import { ALERTS_FILE, dashboardQueries, readDashboard, substitute } from '../fixtures/observability.js'
import { startPrometheus } from '../fixtures/prometheus.js'
import type { Alert } from '../fixtures/prometheus.js'
import { waitFor } from '../fixtures/wait.js'

const JOB = 'players'
const PLAYERS = 500
const MAX_CONCURRENT = 300
/** More requests at once than load shedding admits, so some are refused. */
const BURST = 400

/** Sends one GET or PUT; resolves with the status (0 when the connection failed). */
async function send (agent: Agent, port: number, method: 'GET' | 'PUT', path: string, body?: unknown): Promise<number> {
  return await new Promise((resolve) => {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    const request = httpRequest({ host: '127.0.0.1', port, method, path, agent, headers: payload === undefined ? {} : { 'content-type': 'application/json' } }, (response) => {
      response.resume()
      response.on('end', () => resolve(response.statusCode ?? 0))
      response.on('error', () => resolve(0))
    })
    request.setTimeout(10_000, () => request.destroy())
    request.on('error', () => resolve(0))
    request.end(payload)
  })
}

/** Open-loop traffic on every route, `perSecond` requests a second, until stopped. */
function steadyLoad (agent: Agent, port: number, perSecond: number): { stop: () => Promise<void> } {
  const pending = new Set<Promise<number>>()
  let sent = 0
  const timer = setInterval(() => {
    sent++
    const id = 1 + (sent * 37) % PLAYERS
    const answer = sent % 10 === 0
      ? send(agent, port, 'PUT', `/players/${id}/score`, { score: sent })
      : send(agent, port, 'GET', sent % 5 === 0 ? '/leaderboard?limit=5' : `/players/${id}`)
    pending.add(answer)
    answer.finally(() => pending.delete(answer)).catch(() => {})
  }, 1000 / perSecond)
  return {
    stop: async () => {
      clearInterval(timer)
      await Promise.all(pending)
    }
  }
}

function breakerAlert (alerts: Alert[]): Alert | undefined {
  return alerts.find((alert) => alert.labels.alertname === 'FastifyResilienceBreakerOpen' && alert.labels.name === 'database' && alert.labels.job === JOB)
}

test('through a PostgreSQL outage, every dashboard query returns data from a real Prometheus and the breaker-open alert goes pending, then ends', async (t) => {
  const startedAt = Date.now()
  const dir = mkdtempSync(join(tmpdir(), 'observability-pg-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const [firstPostgres, redis] = await Promise.all([startPostgres({ dir }), startRedis()])
  let postgres: PostgresServer = firstPostgres
  t.teardown(async () => { await postgres.stop() })
  t.teardown(() => redis.stop())

  await seedDatabase(postgres.url, PLAYERS)
  const app = await buildApp({
    databaseUrl: postgres.url,
    redisUrl: redis.url,
    maxConcurrent: MAX_CONCURRENT,
    // A fixed limit, so that the locked table below piles up enough requests to exhaust the retry budget when PostgreSQL stops.
    sheddingLimit: 'static',
    breakerHalfOpenAfterMs: 1000
  })
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  const instance = `127.0.0.1:${port}`

  const prometheus = await startPrometheus({ job: JOB, targets: [instance], ruleFiles: [ALERTS_FILE], intervalSeconds: 1 })
  t.teardown(() => prometheus.stop())
  await waitFor('Prometheus to scrape the app', async () => (await prometheus.query(`up{job="${JOB}"} == 1`)).length === 1, 30_000)

  const agent = new Agent({ keepAlive: true, maxSockets: Infinity })
  t.teardown(() => agent.destroy())
  const load = steadyLoad(agent, port, 20)
  t.teardown(() => load.stop())
  await waitFor('traffic to be scraped', async () => (await prometheus.query(`http_request_duration_seconds_count{job="${JOB}", route="/players/:id", status_code="200"} > 20`)).length > 0, 30_000)
  t.equal(breakerAlert(await prometheus.alerts()), undefined, 'no breaker alert while PostgreSQL is up')

  // A transaction locks the players table (a migration, say): requests pile
  // up, more than load shedding admits; then PostgreSQL stops, and they all
  // fail at once, more than the retry budget allows.
  const locker = new pg.Client({ connectionString: postgres.url })
  locker.on('error', () => {})
  t.teardown(() => locker.end().catch(() => {}))
  await locker.connect()
  await locker.query('BEGIN')
  await locker.query('LOCK TABLE players IN ACCESS EXCLUSIVE MODE')
  const burst = Promise.all(Array.from({ length: BURST }, async (_, i) => await send(agent, port, 'GET', `/players/${1 + (i % PLAYERS)}`)))
  await waitFor('requests to pile up', () => app.loadShedding.inFlight >= MAX_CONCURRENT * 0.9, 10_000)
  await postgres.stop()
  const statuses = await burst
  t.ok(statuses.includes(503), 'the burst was partly shed')
  t.notOk(statuses.includes(500), 'no 500 in the burst')

  await waitFor('FastifyResilienceBreakerOpen to be pending or firing', async () => breakerAlert(await prometheus.alerts()) !== undefined, 30_000)
  const pending = breakerAlert(await prometheus.alerts())
  t.match(pending, { state: /^(pending|firing)$/, labels: { severity: 'critical', instance } }, 'the breaker-open alert is active during the outage')

  // Grafana's $__rate_interval is four scrape intervals at least.
  const values = { job: JOB, instance, __rate_interval: '4s', max_concurrent: String(MAX_CONCURRENT), datasource: 'prometheus' }
  const dashboard = readDashboard()
  for (const variable of dashboard.templating.list.filter((v) => v.type === 'query')) {
    const match = /^label_values\((.*), (\w+)\)$/.exec(variable.definition ?? '')
    t.ok(match !== null, `$${variable.name} is a label_values() query`)
    if (match === null) continue
    const listed = await prometheus.labelValues(match[2] as string, substitute(match[1] as string, { ...values, job: '.*' }))
    t.ok(listed.includes(variable.name === 'job' ? JOB : instance), `$${variable.name} lists this app: ${listed.join(', ')}`)
  }
  // All queries polled together, under one deadline; a PromQL error counts as no data.
  let missing = dashboardQueries(dashboard).map(({ panel, target }) => ({ query: `"${panel.title}" ${target.refId}`, expr: substitute(target.expr, values), error: '' }))
  await waitFor('every dashboard query to return data', async () => {
    const answers = await Promise.all(missing.map(async (entry) => {
      try {
        return (await prometheus.query(entry.expr)).length > 0 ? undefined : { ...entry, error: 'no data' }
      } catch (error) {
        return { ...entry, error: (error as Error).message }
      }
    }))
    missing = answers.filter((entry) => entry !== undefined)
    return missing.length === 0
  }, 30_000).catch(() => {})
  t.same(missing, [], 'every dashboard query returns data')

  postgres = await startPostgres({ dir, port: firstPostgres.port })
  await waitFor('the breaker-open alert to end once PostgreSQL is back', async () => breakerAlert(await prometheus.alerts()) === undefined, 30_000)
  t.equal(app.breaker('database').state, 'closed')
  await load.stop()
  t.comment(`took ${((Date.now() - startedAt) / 1000).toFixed(1)} s`)
})
