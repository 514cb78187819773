// observability/: the Grafana dashboard's structure and queries, and the alert
// rules with promtool (syntax, templates and unit tests). A real Prometheus
// runs them against the example app in observability-prometheus.test.ts.
import { collectDefaultMetrics, Registry } from 'prom-client'
import { test } from 'tap'
import { ALERTS_FILE, ALERT_TESTS_FILE, allPanels, dashboardQueries, metricNames, readAlertRules, readAlertTests, readDashboard } from '../fixtures/observability.js'
import type { Panel } from '../fixtures/observability.js'
import { promtool } from '../fixtures/prometheus.js'

/** The metrics table of docs/metrics.md, as exported (a histogram as its three series). */
const SUITE_SERIES = [
  'circuit_breaker_state', 'circuit_breaker_calls_total', 'requests_shedded_total', 'requests_in_flight',
  'operation_retries_bucket', 'operation_retries_sum', 'operation_retries_count',
  'retry_budget_exhausted_total', 'fallback_total', 'feature_flag_enabled'
]
/** Grafana's reference to the `datasource` variable (Grafana's syntax, not a template literal). */
// eslint-disable-next-line no-template-curly-in-string
const DATASOURCE_UID = '${datasource}'
const HTTP_SERIES = ['http_request_duration_seconds_bucket', 'http_request_duration_seconds_sum', 'http_request_duration_seconds_count']

/** What prom-client's default metrics export, as the example app turns them on. */
async function defaultSeries (): Promise<string[]> {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const metrics = await registry.getMetricsAsJSON()
  // prom-client types `type` as a numeric enum; at run time it is the type's name.
  return metrics.flatMap((metric) => String(metric.type) === 'histogram' ? ['_bucket', '_sum', '_count'].map((suffix) => metric.name + suffix) : [metric.name])
}

function queriesOf (panel: Panel): string[] {
  return (panel.targets ?? []).map((target) => target.expr)
}

test('the dashboard is a Grafana 10 model: a data source variable, job and instance variables that every query filters on', async (t) => {
  const dashboard = readDashboard()
  t.ok(dashboard.schemaVersion >= 38, `schemaVersion ${dashboard.schemaVersion} is Grafana 10 or later`)
  t.equal(dashboard.uid, 'fastify-resilience')
  const variables = new Map(dashboard.templating.list.map((variable) => [variable.name, variable]))
  t.match(variables.get('datasource'), { type: 'datasource', query: 'prometheus' })
  for (const name of ['job', 'instance']) {
    t.match(variables.get(name), { type: 'query', includeAll: true, multi: true, allValue: '.*' }, `$${name} is a multi-value query variable with All`)
  }
  t.match(variables.get('instance')?.definition, /job=~"\$job"/, '$instance lists the instances of the chosen jobs')

  const panels = allPanels(dashboard)
  const ids = panels.map((panel) => panel.id)
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique')
  for (const panel of panels.filter((p) => p.type !== 'row')) {
    t.same(panel.datasource, { type: 'prometheus', uid: DATASOURCE_UID }, `"${panel.title}" queries the chosen data source`)
    t.ok(panel.gridPos.x + panel.gridPos.w <= 24, `"${panel.title}" fits the 24 columns`)
    t.ok((panel.targets ?? []).length > 0, `"${panel.title}" has a query`)
    t.ok((panel.description ?? '').length > 20, `"${panel.title}" says what it shows`)
  }
  const cells = new Map<string, string>()
  for (const panel of panels) {
    for (let x = panel.gridPos.x; x < panel.gridPos.x + panel.gridPos.w; x++) {
      for (let y = panel.gridPos.y; y < panel.gridPos.y + panel.gridPos.h; y++) {
        const other = cells.get(`${x},${y}`)
        if (other !== undefined) t.fail(`"${panel.title}" overlaps "${other}"`)
        cells.set(`${x},${y}`, panel.title)
      }
    }
  }

  for (const { panel, target } of dashboardQueries(dashboard)) {
    for (const name of metricNames(target.expr)) {
      const selectors = [...target.expr.matchAll(new RegExp(`\\b${name}(\\{[^}]*\\})?`, 'g'))]
      for (const selector of selectors) {
        t.ok(selector[1] !== undefined && selector[1].includes('job=~"$job"') && selector[1].includes('instance=~"$instance"'),
          `"${panel.title}" ${target.refId}: ${selector[0]} filters on $job and $instance`)
      }
    }
  }
})

test('the panels: RED by route first, then breakers, load shedding, retries, fallbacks and flags, on metrics the app exports', async (t) => {
  const dashboard = readDashboard()
  const panels = allPanels(dashboard)
  const firstRow = dashboard.panels.findIndex((panel) => panel.type === 'row')
  const secondRow = dashboard.panels.findIndex((panel, index) => index > firstRow && panel.type === 'row')
  t.equal(firstRow, 0, 'the dashboard opens with a row')
  t.match(dashboard.panels[firstRow]?.title, /RED/)
  const red = dashboard.panels.slice(firstRow + 1, secondRow).flatMap(queriesOf)
  t.ok(red.some((q) => /sum by \(route\) \(rate\(http_request_duration_seconds_count\{/.test(q)), 'request rate by route')
  t.ok(red.some((q) => /status_code=~"5\.\."/.test(q) && q.includes('/ sum by (route)')), '5xx share by route')
  t.ok(red.some((q) => /histogram_quantile\(0\.99, sum by \(route, le\) \(rate\(http_request_duration_seconds_bucket\{/.test(q)), 'p99 latency by route')

  const find = (type: string, pattern: RegExp): Panel | undefined => panels.find((panel) => panel.type === type && queriesOf(panel).some((q) => pattern.test(q)))
  t.ok(find('state-timeline', /circuit_breaker_state\{/), 'breaker state per name over time, as a state timeline')
  t.ok(find('timeseries', /by \(name, result\) \(rate\(circuit_breaker_calls_total\{/), 'breaker calls by result')
  t.ok(find('timeseries', /circuit_breaker_calls_total\{[^}]*result="rejected"/), 'calls refused by open breakers')
  t.ok(find('timeseries', /by \(reason\) \(rate\(requests_shedded_total\{/), 'shed rate by reason')
  const inFlight = find('timeseries', /requests_in_flight\{/)
  t.ok(inFlight !== undefined && queriesOf(inFlight).some((q) => /concurrency_limit\{.*or on\(\) vector\(\$max_concurrent\)/.test(q)), 'in flight against the limit')
  const heatmap = find('heatmap', /by \(le\) \(increase\(operation_retries_bucket\{/)
  t.equal(heatmap?.targets?.[0]?.format, 'heatmap', 'retries per call as a heatmap of the histogram\'s buckets')
  t.ok(find('timeseries', /retry_budget_exhausted_total\{/), 'retry budget exhausted')
  t.ok(find('timeseries', /by \(name, tier\) \(rate\(fallback_total\{/), 'fallback answers by tier')
  t.ok(find('state-timeline', /feature_flag_enabled\{/), 'flag values')

  const used = new Set(dashboardQueries(dashboard).flatMap(({ target }) => metricNames(target.expr)))
  const exported = new Set([...SUITE_SERIES, ...HTTP_SERIES, ...await defaultSeries()])
  // The adaptive limit's gauge, drawn when an app exports it (the query falls back to $max_concurrent).
  exported.add('concurrency_limit')
  t.same([...used].filter((name) => !exported.has(name)), [], 'every metric the dashboard reads is exported')
  t.same(SUITE_SERIES.filter((name) => name !== 'operation_retries_sum' && !used.has(name)), [], 'every metric of the suite is on the dashboard')
})

test('alerts.yml passes promtool check rules and its unit tests', async (t) => {
  const check = await promtool(['check', 'rules', ALERTS_FILE])
  t.equal(check.code, 0, check.output)
  t.match(check.output, /SUCCESS: 4 rules found/)
  const unit = await promtool(['test', 'rules', ALERT_TESTS_FILE])
  t.equal(unit.code, 0, unit.output)
  t.match(unit.output, /SUCCESS/)
})

test('each alert tells the on-call what to check, reads metrics the app exports, and is tested firing and not firing with its metrics present', async (t) => {
  const rules = readAlertRules()
  const cases = readAlertTests()
  const exported = new Set([...SUITE_SERIES, ...HTTP_SERIES])
  t.same(rules.map((rule) => rule.alert).sort(), [
    'FastifyResilienceBreakerOpen', 'FastifyResilienceFallbackDefaultTier', 'FastifyResilienceLoadShedding', 'FastifyResilienceRetryBudgetExhausted'
  ])
  for (const rule of rules) {
    t.match(rule.labels, { severity: /^(critical|warning)$/ }, `${rule.alert} has a severity`)
    t.ok((rule.annotations?.summary ?? '').length > 20, `${rule.alert} has a summary`)
    t.match(rule.annotations?.description, /\b[Cc]heck\b/, `${rule.alert}'s description says what to check`)
    const metrics = metricNames(rule.expr)
    t.ok(metrics.length > 0 && metrics.every((name) => exported.has(name)), `${rule.alert} reads exported metrics: ${metrics.join(', ')}`)

    const withMetrics = cases.filter((c) => metrics.every((name) => c.input_series.some((s) => s.series.startsWith(`${name}{`))))
    const checks = withMetrics.flatMap((c) => (c.alert_rule_test ?? []).filter((a) => a.alertname === rule.alert))
    t.ok(checks.some((a) => a.exp_alerts.length > 0), `${rule.alert} has a case where it fires`)
    t.ok(checks.some((a) => a.exp_alerts.length === 0), `${rule.alert} has a case where it does not fire although its metrics are there`)
  }
  const seriesNames = cases.flatMap((c) => c.input_series.map((s) => /^([a-zA-Z_:][\w:]*)\{/.exec(s.series)?.[1]))
  t.same(seriesNames.filter((name) => name === undefined || !exported.has(name)), [], 'the unit tests feed only series the app exports')
})
