import { test } from 'tap'
import { OptionReader } from '../../../plugins/lib/plugin/options.js'
import { DEFAULT_PRIORITY_SHARES, priorityThresholds, readPriorityShares } from '../../../plugins/lib/shedding/priority-thresholds.js'

const read = new OptionReader('fastify-resilience-load-shedding')

test('with the default shares, sheddable requests stop at 80 % of the limit, normal ones at 95 %, critical ones at the limit', async (t) => {
  t.same(priorityThresholds(DEFAULT_PRIORITY_SHARES, 100), { sheddable: 80, normal: 95, critical: 100 })
  t.same(priorityThresholds(DEFAULT_PRIORITY_SHARES, 10), { sheddable: 8, normal: 9, critical: 10 }, 'rounded down: 9.5 slots are 9')
  t.same(priorityThresholds(DEFAULT_PRIORITY_SHARES, 3), { sheddable: 2, normal: 2, critical: 3 })
})

test('a small limit still leaves one slot to every priority with a share above 0; a share of 0 has none', async (t) => {
  t.same(priorityThresholds(DEFAULT_PRIORITY_SHARES, 1), { sheddable: 1, normal: 1, critical: 1 })
  t.same(priorityThresholds({ sheddable: 0, normal: 0.01, critical: 1 }, 1000), { sheddable: 0, normal: 10, critical: 1000 })
  t.same(priorityThresholds({ sheddable: 0, normal: 0.01, critical: 1 }, 5), { sheddable: 0, normal: 1, critical: 5 })
})

test('readPriorityShares fills in the defaults of the priorities left out', async (t) => {
  t.same(readPriorityShares(read, undefined), { sheddable: 0.8, normal: 0.95, critical: 1 })
  t.same(readPriorityShares(read, { sheddable: 0.5 }), { sheddable: 0.5, normal: 0.95, critical: 1 })
  t.same(readPriorityShares(read, { sheddable: 0, normal: 0, critical: 0 }), { sheddable: 0, normal: 0, critical: 0 }, '0 is a share, not a missing value')
})

test('readPriorityShares refuses shares out of 0 to 1, unknown priorities and shares out of order, in one sentence each', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [{ critical: 1.5 }, /^fastify-resilience-load-shedding: "priorityShares.critical" must be a number from 0 to 1 \(got 1.5\)$/],
    [{ normal: -0.1 }, /"priorityShares.normal" must be a number from 0 to 1 \(got -0.1\)/],
    [{ sheddable: '0.5' }, /"priorityShares.sheddable" must be a number from 0 to 1 \(got "0.5"\)/],
    [{ urgent: 1 }, /unknown option "priorityShares.urgent"/],
    [[0.5], /"priorityShares" must be an object \(got an array\)/],
    [{ sheddable: 0.96 }, /^fastify-resilience-load-shedding: "priorityShares" must be ordered sheddable <= normal <= critical \(got an object\)$/],
    [{ normal: 0.9, critical: 0.8 }, /"priorityShares" must be ordered sheddable <= normal <= critical/]
  ]
  for (const [value, message] of cases) {
    t.throws(() => readPriorityShares(read, value), { name: 'TypeError', message }, JSON.stringify(value))
  }
})
