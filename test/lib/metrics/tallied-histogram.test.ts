import { Registry } from 'prom-client'
import { test } from 'tap'
import { talliedHistogram } from '../../../plugins/lib/metrics/registry.js'
import { promtoolCheck } from '../../fixtures/promtool.js'

const config = { help: 'Retries per call.', labelNames: ['operation'] as const, buckets: [0, 1, 2, 3, 5, 10] }

/** The exposition's lines for `operation`, without HELP/TYPE. */
async function series (registry: Registry, operation: string): Promise<string[]> {
  return (await registry.metrics()).split('\n').filter((line) => line.includes(`operation="${operation}"`))
}

test('prom-client still formats histograms through getForPromString, which TalliedHistogram overrides', async (t) => {
  // Not in prom-client's public types: package.json pins prom-client to ~15.1 for it. If this fails
  // after an upgrade, the tallies are no longer exported: TalliedHistogram must follow prom-client.
  const registry = new Registry()
  const histogram = talliedHistogram(registry, 'retries_probe', config)
  let formatted = 0
  const original = histogram.getForPromString.bind(histogram)
  histogram.getForPromString = async () => { formatted++; return await original() }
  histogram.tally({ operation: 'probe' }).observe(1)
  const text = await registry.metrics()
  t.equal(formatted, 1, 'the registry formats the histogram through getForPromString')
  t.match(text, /^retries_probe_count\{operation="probe"\} 1$/m, 'and the tallies reach the exposition')
})

test('tallies are exported as cumulative buckets, +Inf, sum and count, in a format promtool accepts', async (t) => {
  const registry = new Registry()
  const histogram = talliedHistogram(registry, 'operation_retries', config)
  const tally = histogram.tally({ operation: 'lookup' })
  for (const value of [0, 0, 1, 4, 12]) tally.observe(value)
  t.same(await series(registry, 'lookup'), [
    'operation_retries_bucket{le="0",operation="lookup"} 2',
    'operation_retries_bucket{le="1",operation="lookup"} 3',
    'operation_retries_bucket{le="2",operation="lookup"} 3',
    'operation_retries_bucket{le="3",operation="lookup"} 3',
    'operation_retries_bucket{le="5",operation="lookup"} 4',
    'operation_retries_bucket{le="10",operation="lookup"} 4',
    'operation_retries_bucket{le="+Inf",operation="lookup"} 5',
    'operation_retries_sum{operation="lookup"} 17',
    'operation_retries_count{operation="lookup"} 5'
  ])
  const { code, output } = await promtoolCheck(await registry.metrics())
  t.not(code, 1, output)
  t.notMatch(output, /error while linting|text format parsing error/, output)
})

test('the same label set shares one tally (two apps on one registry), and direct observations still show', async (t) => {
  const registry = new Registry()
  const first = talliedHistogram(registry, 'operation_retries', config)
  const second = talliedHistogram(registry, 'operation_retries', config)
  t.equal(first, second, 'one metric per registry')
  first.tally({ operation: 'shared' }).observe(1)
  second.tally({ operation: 'shared' }).observe(2)
  first.observe({ operation: 'direct' }, 3)
  t.match(await series(registry, 'shared'), ['operation_retries_bucket{le="0",operation="shared"} 0'])
  t.ok((await series(registry, 'shared')).includes('operation_retries_count{operation="shared"} 2'), 'one series, both observations')
  t.ok((await series(registry, 'direct')).includes('operation_retries_count{operation="direct"} 1'))
  const json = await first.get()
  const labelsOf = (value: { labels: object }): Record<string, unknown> => value.labels as Record<string, unknown>
  t.ok(json.values.some((value) => labelsOf(value).operation === 'shared' && labelsOf(value).le === 2 && value.value === 2), 'get() splays the tally labels too')
})

test('resetMetrics() empties the tallies; a tally with no observation exports nothing', async (t) => {
  const registry = new Registry()
  const histogram = talliedHistogram(registry, 'operation_retries', config)
  const tally = histogram.tally({ operation: 'reset' })
  histogram.tally({ operation: 'idle' })
  tally.observe(2)
  registry.resetMetrics()
  t.same(await series(registry, 'reset'), [], 'gone after the reset')
  t.same(await series(registry, 'idle'), [], 'never observed: no series')
  tally.observe(0)
  t.ok((await series(registry, 'reset')).includes('operation_retries_count{operation="reset"} 1'), 'counts again from zero')
})
