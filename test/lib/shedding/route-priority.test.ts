import { test } from 'tap'
import { OptionReader } from '../../../plugins/lib/plugin/options.js'
import { kPriority, priorityOfEarlierRoute, readRoutePriority } from '../../../plugins/lib/shedding/route-priority.js'
import type { PriorityConfig } from '../../../plugins/lib/shedding/route-priority.js'

const read = new OptionReader('fastify-resilience-load-shedding: route "GET /x"')

test('a route\'s shed option gives its priority: normal when left out, false for shed: false', async (t) => {
  t.equal(readRoutePriority(read, undefined), 'normal')
  t.equal(readRoutePriority(read, {}), 'normal')
  t.equal(readRoutePriority(read, false), false)
  t.equal(readRoutePriority(read, { priority: 'critical' }), 'critical')
  t.equal(readRoutePriority(read, { priority: 'sheddable' }), 'sheddable')
  t.equal(readRoutePriority(read, { priority: 'normal' }), 'normal')
})

test('a bad shed option throws one sentence naming the route and the option', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [true, /^fastify-resilience-load-shedding: route "GET \/x": "config.resilience.shed" must be \{ priority \} or false \(got true\)$/],
    ['critical', /"config.resilience.shed" must be \{ priority \} or false \(got "critical"\)/],
    [{ priority: 'urgent' }, /^fastify-resilience-load-shedding: route "GET \/x": "config.resilience.shed.priority" must be one of "critical", "normal", "sheddable" \(got "urgent"\)$/],
    [{ priority: 'critical', weight: 2 }, /unknown option "config.resilience.shed.weight"/]
  ]
  for (const [shed, message] of cases) t.throws(() => readRoutePriority(read, shed), { name: 'TypeError', message }, JSON.stringify(shed))
})

test('a route added before the plugin gets its priority on first use, remembered on its config, and junk reads as normal instead of throwing', async (t) => {
  const cases: Array<[PriorityConfig, string | false]> = [
    [{}, 'normal'],
    [{ resilience: {} }, 'normal'],
    [{ resilience: { shed: false } }, false],
    [{ resilience: { shed: { priority: 'sheddable' } } }, 'sheddable'],
    [{ resilience: { shed: { priority: 'critical' } } }, 'critical'],
    [{ resilience: { shed: { priority: 'urgent' } } }, 'normal'],
    [{ resilience: { shed: 'low' } }, 'normal']
  ]
  for (const [config, priority] of cases) {
    const label = JSON.stringify(config)
    t.equal(priorityOfEarlierRoute(config), priority, label)
    t.equal(config[kPriority], priority, `${label}: remembered`)
  }
})
