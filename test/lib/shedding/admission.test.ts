import { test } from 'tap'
import { Admission } from '../../../plugins/lib/shedding/admission.js'
import type { EventLoopPressureReason } from '../../../plugins/lib/shedding/event-loop-pressure.js'
import { DEFAULT_PRIORITY_SHARES } from '../../../plugins/lib/shedding/priority-thresholds.js'
import type { ShedPriority } from '../../../plugins/lib/shedding/priority-thresholds.js'

const PRIORITIES: ShedPriority[] = ['sheddable', 'normal', 'critical']

/** What each priority would get now: its refusal reason, or 'admitted'. */
function verdicts (admission: Admission): Record<ShedPriority, string> {
  return Object.fromEntries(PRIORITIES.map((priority) => [priority, admission.refusal(priority) ?? 'admitted'])) as Record<ShedPriority, string>
}

test('as requests pile up, sheddable ones are refused first (80 of 100), then normal ones (95), then all at the limit', async (t) => {
  const admission = new Admission(DEFAULT_PRIORITY_SHARES, 100)
  t.equal(admission.limit, 100)
  admission.inFlight = 79
  t.same(verdicts(admission), { sheddable: 'admitted', normal: 'admitted', critical: 'admitted' })
  admission.inFlight = 80
  t.same(verdicts(admission), { sheddable: 'priority', normal: 'admitted', critical: 'admitted' })
  admission.inFlight = 95
  t.same(verdicts(admission), { sheddable: 'priority', normal: 'priority', critical: 'admitted' })
  admission.inFlight = 99
  t.same(verdicts(admission), { sheddable: 'priority', normal: 'priority', critical: 'admitted' })
  admission.inFlight = 100
  t.same(verdicts(admission), { sheddable: 'concurrency', normal: 'concurrency', critical: 'concurrency' })
})

test('a new limit moves every priority\'s threshold with it', async (t) => {
  const admission = new Admission(DEFAULT_PRIORITY_SHARES, 100)
  admission.limit = 10
  t.equal(admission.limit, 10)
  admission.inFlight = 8
  t.same(verdicts(admission), { sheddable: 'priority', normal: 'admitted', critical: 'admitted' }, '8 of 10: 0.8 of the new limit')
  admission.inFlight = 9
  t.same(verdicts(admission), { sheddable: 'priority', normal: 'priority', critical: 'admitted' }, '9 of 10: 0.95 of 10, rounded down')
  admission.inFlight = 10
  t.same(verdicts(admission), { sheddable: 'concurrency', normal: 'concurrency', critical: 'concurrency' })
  admission.limit = 200
  t.same(verdicts(admission), { sheddable: 'admitted', normal: 'admitted', critical: 'admitted' }, '10 of 200')
})

test('event-loop pressure refuses normal and sheddable requests, never critical ones, and only where the limit does not already refuse', async (t) => {
  const eventLoop: { pressure: EventLoopPressureReason | undefined } = { pressure: undefined }
  const admission = new Admission(DEFAULT_PRIORITY_SHARES, 10, eventLoop)
  t.same(verdicts(admission), { sheddable: 'admitted', normal: 'admitted', critical: 'admitted' })
  eventLoop.pressure = 'event_loop_delay'
  t.same(verdicts(admission), { sheddable: 'event_loop_delay', normal: 'event_loop_delay', critical: 'admitted' })
  eventLoop.pressure = 'event_loop_utilization'
  t.same(verdicts(admission), { sheddable: 'event_loop_utilization', normal: 'event_loop_utilization', critical: 'admitted' })
  admission.inFlight = 8
  t.same(verdicts(admission), { sheddable: 'priority', normal: 'event_loop_utilization', critical: 'admitted' })
  admission.inFlight = 10
  t.same(verdicts(admission), { sheddable: 'concurrency', normal: 'concurrency', critical: 'concurrency' })
  eventLoop.pressure = undefined
  admission.inFlight = 0
  t.same(verdicts(admission), { sheddable: 'admitted', normal: 'admitted', critical: 'admitted' }, 'admitted again once the pressure is gone')
})
