import type { ServerResponse } from 'node:http'
import { test } from 'tap'
import type { AdaptiveLimitSettings } from '../../../plugins/lib/shedding/adaptive-limit.js'
import { ADAPTIVE_DEFAULTS } from '../../../plugins/lib/shedding/adaptive-limit.js'
import { Admission } from '../../../plugins/lib/shedding/admission.js'
import { LIMIT_MOVE_PERIOD_MS, LimitLearner } from '../../../plugins/lib/shedding/limit-learner.js'
import type { LimitMove } from '../../../plugins/lib/shedding/limit-moves.js'
import { DEFAULT_PRIORITY_SHARES } from '../../../plugins/lib/shedding/priority-thresholds.js'
import { ownClock } from '../../fixtures/clock.js'
import type { OwnClock } from '../../fixtures/clock.js'

/** One window per successful request, a limit that grows while the RTT stays within 4x the baseline. */
const SETTINGS: AdaptiveLimitSettings = { ...ADAPTIVE_DEFAULTS, minLimit: 2, initialLimit: 4, maxLimit: 100, windowMs: 1, minSamples: 1, rttTolerance: 4, probeIntervalMs: 60_000 }

function response (statusCode = 200, writableFinished = true): ServerResponse {
  return { statusCode, writableFinished } as unknown as ServerResponse
}

interface Learning { clock: OwnClock, admission: Admission, learner: LimitLearner, moves: LimitMove[] }

function learning (settings: AdaptiveLimitSettings = SETTINGS): Learning {
  const clock = ownClock()
  const admission = new Admission(DEFAULT_PRIORITY_SHARES, 1000)
  const moves: LimitMove[] = []
  const learner = new LimitLearner(admission, settings, (move) => moves.push(move), clock)
  return { clock, admission, learner, moves }
}

/** One request admitted with `inFlight` in flight, answered after `rttMs`. */
async function serve ({ clock, learner }: Learning, rttMs: number, inFlight: number, reply = response()): Promise<void> {
  learner.admitted(reply, inFlight)
  await clock.tickAsync(rttMs)
  learner.closed(reply)
}

test('the admission starts at minLimit to measure the baseline, and its first successful window brings initialLimit', async (t) => {
  const run = learning()
  t.equal(run.admission.limit, 2, 'minLimit')
  await serve(run, 10, 1)
  t.equal(run.admission.limit, 4, 'initialLimit')
  t.same(run.moves, [], 'the end of the first measurement is not a move')
})

test('failed, refused-by-the-app and cut-short responses teach the limit nothing', async (t) => {
  const run = learning()
  await serve(run, 10, 1, response(500))
  await serve(run, 10, 1, response(404))
  await serve(run, 10, 1, response(200, false))
  t.equal(run.admission.limit, 2, 'still measuring the baseline')
  await serve(run, 10, 1)
  t.equal(run.admission.limit, 4)
})

test('round-trip times are measured on the learner\'s clock from admission to close: slow windows shrink the limit', async (t) => {
  const run = learning()
  await serve(run, 10, 1)
  for (let i = 0; i < 3; i++) await serve(run, 10, run.admission.limit)
  const grown = run.admission.limit
  t.ok(grown > 4, `unqueued windows grow it (${grown})`)
  for (let i = 0; i < 3; i++) await serve(run, 100, run.admission.limit)
  t.ok(run.admission.limit < grown, `10 times the baseline RTT shrinks it (${run.admission.limit})`)
})

test('a doubling is reported once per period, with where it came from; a probe\'s dip to minLimit is not reported', async (t) => {
  const run = learning({ ...SETTINGS, probeIntervalMs: 1000 })
  await serve(run, 10, 1)
  while (run.admission.limit < 16) await serve(run, 10, run.admission.limit)
  t.equal(run.moves.length, 1, `reported once on the way to ${run.admission.limit}`)
  t.match(run.moves[0], { from: 4 })
  t.ok((run.moves[0] as LimitMove).to >= 8, `to ${(run.moves[0] as LimitMove).to}`)
  await run.clock.tickAsync(LIMIT_MOVE_PERIOD_MS)
  await serve(run, 10, run.admission.limit)
  t.equal(run.admission.limit, 2, 'past probeIntervalMs the next window probes at minLimit')
  t.equal(run.moves.length, 1, 'a fall to an eighth or less, but a probe: not reported')
})
