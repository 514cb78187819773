/**
 * The overload benchmark's capacity step: a constant open-loop load on
 * `GET /work` while the service time doubles (the capacity halves) and later
 * comes back, against the adaptive default and the static default of load
 * shedding; goodput, 503s, timeouts and the live limit second by second.
 * Run by bench/overload.ts, which owns the servers and the database.
 */
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { lineChart } from './lib/line-chart.js'
import { openLoop } from './lib/open-loop.js'
import { ADAPTIVE_DEFAULT_LABEL, STATIC_DEFAULT_LABEL, liveLimit } from './lib/overload-cells.js'
import type { Mode, ServerFor } from './lib/overload-cells.js'
import { table, verdict } from './lib/report.js'
import type { BenchServer } from './lib/server-process.js'
import { fixed, integer, median, percent } from './lib/stats.js'

/** Offered load, as a multiple of the capacity measured before the step. */
export const STEP_LOAD = 2
/** How long after the step goodput may stay below {@link RECOVERED_SHARE} of the new capacity (s). */
const TARGET_SECONDS = 5
const RECOVERED_SHARE = 0.9
/** Buckets in a row at or above the threshold that count as recovered (fewer if the phase ends first). */
const SUSTAINED_BUCKETS = 3

export interface StepTiming {
  durationMs: number
  /** When the service time doubles, from the start of the load (ms). */
  stepAtMs: number
  /** When it comes back (ms). */
  recoverAtMs: number
  /** Width of a bucket of the timeline (ms). */
  bucketMs: number
  /** How often the live limit is read (ms). */
  pollMs: number
}

export const FULL_STEP: StepTiming = { durationMs: 30_000, stepAtMs: 10_000, recoverAtMs: 20_000, bucketMs: 1000, pollMs: 200 }
export const SMOKE_STEP: StepTiming = { durationMs: 600, stepAtMs: 200, recoverAtMs: 400, bucketMs: 100, pollMs: 50 }

/** One bucket of the timeline. */
interface Bucket {
  /** Service time of the requests scheduled in it (ms), as set when it began. */
  serviceMs: number
  /** Per second. */
  goodput: number
  shed: number
  timeouts: number
  others: number
  /** Sum of the successes' latencies (ms). */
  successLatencyMsSum: number
  /** The last live limit read in the bucket (the previous one if none was). */
  limit: number | null
}

/** One run through the step. */
export interface StepRun {
  mode: Mode
  label: string
  offered: number
  buckets: Bucket[]
  /** Every read of the live limit, from the start (ms). */
  limits: Array<{ atMs: number, limit: number }>
  /** When the server acknowledged each change of the service time, from the start (ms). */
  appliedAtMs: number[]
}

/** Everything the scenario measured. */
export interface StepMeasurements {
  timing: StepTiming
  serviceMs: number
  steppedServiceMs: number
  timeoutMs: number
  capacity: number
  /** Connections of the server's pool. */
  poolSize: number
  runs: StepRun[]
}

async function setServiceMs (server: BenchServer, ms: number): Promise<void> {
  const response = await fetch(`${server.url}/service-ms`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ms }) })
  if (!response.ok) throw new Error(`overload: PUT /service-ms answered ${response.status}`)
}

async function runStep (server: BenchServer, mode: Mode, label: string, rate: number, measurements: Omit<StepMeasurements, 'runs'>): Promise<StepRun> {
  const { timing, serviceMs, steppedServiceMs, timeoutMs } = measurements
  const limits: Array<{ atMs: number, limit: number }> = []
  const appliedAtMs: number[] = []
  const changes: Array<Promise<void>> = []
  const stopPolling = new AbortController()
  let poller: Promise<void> = Promise.resolve()
  let startMs = 0
  const change = (atMs: number, ms: number): void => {
    setTimeout(() => {
      changes.push(setServiceMs(server, ms).then(() => { appliedAtMs.push(performance.now() - startMs) }))
    }, Math.max(0, startMs + atMs - performance.now()))
  }
  const poll = async (): Promise<void> => {
    while (!stopPolling.signal.aborted) {
      const asked = performance.now()
      try {
        const limit = await liveLimit(server, AbortSignal.timeout(1000))
        if (limit !== null) limits.push({ atMs: asked - startMs, limit })
      } catch {
        // A read that did not come back in time is a gap in the plot, not a failure.
      }
      await sleep(Math.max(0, timing.pollMs - (performance.now() - asked)), undefined, { signal: stopPolling.signal }).catch(() => {})
    }
  }
  let result
  try {
    result = await openLoop({
      url: `${server.url}/work`,
      rate,
      warmupMs: 0,
      durationMs: timing.durationMs,
      timeoutMs,
      bucketMs: timing.bucketMs,
      onStart: (start) => {
        startMs = start
        change(timing.stepAtMs, steppedServiceMs)
        change(timing.recoverAtMs, serviceMs)
        poller = poll()
      }
    })
  } finally {
    stopPolling.abort()
    await poller
    await Promise.all(changes)
  }
  // Smoke mode reuses the server: leave it as it was found.
  await setServiceMs(server, serviceMs)
  const perSecond = 1000 / timing.bucketMs
  let limit: number | null = null
  const buckets = result.timeline.map(({ counts, successLatencyMsSum }, index): Bucket => {
    const from = index * timing.bucketMs
    for (const read of limits) if (read.atMs >= from && read.atMs < from + timing.bucketMs) limit = read.limit
    return {
      serviceMs: from >= timing.stepAtMs && from < timing.recoverAtMs ? steppedServiceMs : serviceMs,
      goodput: counts.success * perSecond,
      shed: counts.shed * perSecond,
      timeouts: counts.timeout * perSecond,
      others: (counts.status + counts.error) * perSecond,
      successLatencyMsSum,
      limit
    }
  })
  return { mode, label, offered: rate, buckets, limits, appliedAtMs }
}

/**
 * The capacity step against a fresh server with the adaptive default, then
 * one with the static default, both at {@link STEP_LOAD} times `capacity`.
 */
export async function capacityStep (serverFor: ServerFor, log: (line: string) => void, measurements: Omit<StepMeasurements, 'runs'>): Promise<StepMeasurements> {
  const runs: StepRun[] = []
  for (const [mode, label] of [['adaptive', ADAPTIVE_DEFAULT_LABEL], ['load-shedding-default', STATIC_DEFAULT_LABEL]] as const) {
    const run = await runStep(await serverFor(mode), mode, label, STEP_LOAD * measurements.capacity, measurements)
    runs.push(run)
    log(`overload: capacity step, ${label}: goodput per ${measurements.timing.bucketMs} ms ${run.buckets.map((bucket) => integer(bucket.goodput)).join(' ')}; ` +
      `limit ${run.buckets.map((bucket) => bucket.limit ?? '-').join(' ')}`)
  }
  return { ...measurements, runs }
}

/** A phase of the run (before the step, after it, after the recovery), and how the run did in it. */
interface Phase {
  /** E.g. `20 → 40 ms`. */
  name: string
  /** True after a change of the service time (false for the phase before the step). */
  afterStep: boolean
  fromMs: number
  toMs: number
  /** The capacity for the phase's service time. */
  capacity: number
  /** Seconds from the change to the end of the first bucket that starts {@link SUSTAINED_BUCKETS} at or above the threshold; undefined if none in the phase. */
  recoveredAfterS: number | undefined
  lowest: number
  mean: number
  shed: number
  timeouts: number
  /** Mean latency of the successes (ms). */
  latencyMs: number
  /** Every live limit read in the phase. */
  limits: number[]
}

function phasesOf (run: StepRun, m: StepMeasurements): Phase[] {
  const { timing } = m
  const bucketS = timing.bucketMs / 1000
  const scaled = m.capacity * m.serviceMs / m.steppedServiceMs
  return [
    { name: `${m.serviceMs} ms, before the step`, afterStep: false, fromMs: 0, toMs: timing.stepAtMs, capacity: m.capacity },
    { name: `${m.serviceMs} → ${m.steppedServiceMs} ms`, afterStep: true, fromMs: timing.stepAtMs, toMs: timing.recoverAtMs, capacity: scaled },
    { name: `${m.steppedServiceMs} → ${m.serviceMs} ms`, afterStep: true, fromMs: timing.recoverAtMs, toMs: timing.durationMs, capacity: m.capacity }
  ].map(({ name, afterStep, fromMs, toMs, capacity }) => {
    const buckets = run.buckets.slice(Math.round(fromMs / timing.bucketMs), Math.round(toMs / timing.bucketMs))
    const threshold = RECOVERED_SHARE * capacity
    const start = buckets.findIndex((_, index) => buckets.slice(index, index + SUSTAINED_BUCKETS).every((bucket) => bucket.goodput >= threshold))
    const sum = (pick: (bucket: Bucket) => number): number => buckets.reduce((total, bucket) => total + pick(bucket), 0)
    const offered = sum((bucket) => bucket.goodput + bucket.shed + bucket.timeouts + bucket.others)
    const successes = sum((bucket) => bucket.goodput * bucketS)
    return {
      name,
      afterStep,
      fromMs,
      toMs,
      capacity,
      recoveredAfterS: start === -1 ? undefined : (start + 1) * bucketS,
      lowest: Math.min(...buckets.map((bucket) => bucket.goodput)),
      mean: sum((bucket) => bucket.goodput) / Math.max(1, buckets.length),
      shed: offered === 0 ? Number.NaN : sum((bucket) => bucket.shed) / offered,
      timeouts: offered === 0 ? Number.NaN : sum((bucket) => bucket.timeouts) / offered,
      latencyMs: successes === 0 ? Number.NaN : sum((bucket) => bucket.successLatencyMsSum) / successes,
      limits: run.limits.filter((read) => read.atMs >= fromMs && read.atMs < toMs).map((read) => read.limit)
    }
  })
}

/** `10 s`, or `0.2 s` below a second. */
function seconds (s: number): string {
  return `${fixed(s, Number.isInteger(s) ? 0 : 1)} s`
}

function recoveredText (phase: Phase, bucketS: number): string {
  if (!phase.afterStep) return '-'
  if (phase.recoveredAfterS === undefined) return `not within the phase's ${seconds((phase.toMs - phase.fromMs) / 1000)}`
  return phase.recoveredAfterS <= bucketS ? `≤ ${seconds(bucketS)} (the first ${bucketS === 1 ? 'second' : 'bucket'})` : seconds(phase.recoveredAfterS)
}

function range (values: number[]): string {
  return values.length === 0 ? '-' : `${Math.min(...values)}–${Math.max(...values)}`
}

/** What the adaptive limit's reads say about a dip after the halving and a higher limit after the recovery, if the run shows either. */
function whyNote ([before, halved, restored]: Phase[], poolSize: number): string[] {
  if (before === undefined || halved === undefined || restored === undefined) return []
  const lines: string[] = []
  const lowest = Math.min(...halved.limits)
  if (lowest < poolSize) {
    lines.push(`**Why the dip.** After the halving the live limit fell as low as ${lowest}, below the pool's ${poolSize} connections, so connections idled while requests were refused. ` +
      'The adaptive limit compares each window\'s latency with a baseline measured at the old service time: the slower service itself reads as queueing, and the limit shrinks until it has sat on its floor for a few windows, when the baseline is measured again; then it grows back.')
  }
  const limitBefore = median(before.limits)
  const limitAfter = median(restored.limits)
  if (limitAfter > 1.2 * limitBefore) {
    lines.push(`After the recovery the limit settled higher than before the step (median of the reads ${fixed(limitAfter, 0)} against ${fixed(limitBefore, 0)}) and successes took longer (mean ${fixed(restored.latencyMs, 1)} ms against ${fixed(before.latencyMs, 1)} ms): ` +
      'a baseline measured during the slow phase stays until a window is faster than it or the next periodic probe measures it again.')
  }
  return lines.length === 0 ? [] : [lines.join(' '), '']
}

/** Markdown, chart and headline of the capacity step. */
export function capacityStepReport (m: StepMeasurements, smoke: boolean): { markdown: string, chart: string, headline: string } {
  const { timing } = m
  const bucketS = timing.bucketMs / 1000
  const per = bucketS === 1 ? 'second' : `${timing.bucketMs} ms`
  const adaptive = m.runs.find((run) => run.mode === 'adaptive') as StepRun
  const phases = new Map(m.runs.map((run) => [run, phasesOf(run, m)]))
  const adaptivePhases = (phases.get(adaptive) as Phase[]).filter((phase) => phase.afterStep)
  const staticPhases = (phases.get(m.runs.find((run) => run.mode !== 'adaptive') as StepRun) as Phase[]).filter((phase) => phase.afterStep)
  const met = adaptivePhases.every((phase) => phase.recoveredAfterS !== undefined && phase.recoveredAfterS <= TARGET_SECONDS)
  const xOf = (index: number): number => (index + 0.5) * bucketS
  const capacityAt = (ms: number): number => ms >= timing.stepAtMs && ms < timing.recoverAtMs ? m.capacity * m.serviceMs / m.steppedServiceMs : m.capacity
  const capacityLine = [0, timing.stepAtMs, timing.stepAtMs, timing.recoverAtMs, timing.recoverAtMs, timing.durationMs]
    .map((ms, index) => [ms / 1000, capacityAt(index % 2 === 1 ? ms - 1 : ms)] as const)
  const colors = ['#4e79a7', '#f28e2b']
  const short = (run: StepRun): string => run.mode === 'adaptive' ? '(e) adaptive (the default)' : '(d) static default'
  const chart = lineChart(`Capacity step at ${STEP_LOAD}x: service time ${m.serviceMs} → ${m.steppedServiceMs} → ${m.serviceMs} ms`, 'seconds since the load started', timing.durationMs / 1000, [
    {
      unit: 'goodput, req/s',
      series: [
        ...m.runs.map((run, index) => ({ label: short(run), color: colors[index] as string, points: run.buckets.map((bucket, i) => [xOf(i), bucket.goodput] as const) })),
        { label: 'capacity', color: '#555', dashed: true, points: capacityLine },
        { label: '90 % of capacity', color: '#59a14f', dashed: true, points: capacityLine.map(([x, y]) => [x, RECOVERED_SHARE * y] as const) }
      ]
    },
    {
      unit: 'live limit',
      series: [{ label: `${short(adaptive)}: live limit, read every ${timing.pollMs} ms (the static default's stays at 1000)`, color: colors[0] as string, points: adaptive.limits.map((read) => [read.atMs / 1000, read.limit] as const) }]
    }
  ], [
    { x: timing.stepAtMs / 1000, label: `${m.steppedServiceMs} ms` },
    { x: timing.recoverAtMs / 1000, label: `${m.serviceMs} ms` }
  ])

  const summaryRows = m.runs.flatMap((run) => (phases.get(run) as Phase[]).map((phase) => [
    run.label, phase.name, integer(phase.capacity), recoveredText(phase, bucketS),
    integer(phase.lowest), integer(phase.mean), percent(phase.mean / phase.capacity, 0), fixed(phase.latencyMs, 1), percent(phase.shed), percent(phase.timeouts), range(phase.limits)
  ]))
  const timelineRows = adaptive.buckets.map((bucket, index) => [
    fixed(index * bucketS, 1), String(bucket.serviceMs),
    ...m.runs.flatMap((run) => {
      const b = run.buckets[index] as Bucket
      return run === adaptive
        ? [integer(b.goodput), integer(b.shed), integer(b.timeouts), b.limit === null ? '-' : String(b.limit)]
        : [integer(b.goodput), integer(b.shed), integer(b.timeouts)]
    })
  ])
  const applied = (run: StepRun): string => run.appliedAtMs.map((ms) => `${fixed(ms / 1000, 2)} s`).join(' and ')
  const sayPhase = (phase: Phase): string => `${phase.name} (new capacity ${integer(phase.capacity)} req/s): ${recoveredText(phase, bucketS)}` +
    (phase.recoveredAfterS === undefined || phase.recoveredAfterS > TARGET_SECONDS
      ? ` (missed${phase.recoveredAfterS === undefined ? '' : ` by ${fixed(phase.recoveredAfterS - TARGET_SECONDS, 1)} s`}; mean ${percent(phase.mean / phase.capacity, 0)} of the new capacity over the phase, lowest ${per} ${integer(phase.lowest)} req/s)`
      : '')

  const markdown = [
    '### Capacity step',
    '',
    ...(smoke ? ['*Smoke run: the step scenario shrunk to a fraction of a second, in buckets of 100 ms; nothing is judged.*', ''] : []),
    `**Setup.** A fresh server per protection, then ${seconds(timing.durationMs / 1000)} of open-loop load on \`GET /work\` at ${STEP_LOAD}x the capacity measured above (${integer(STEP_LOAD * m.capacity)} req/s; no warm-up: the plot starts with the fresh server). ` +
      `At ${seconds(timing.stepAtMs / 1000)} the bench sets the query's \`pg_sleep\` from ${m.serviceMs} to ${m.steppedServiceMs} ms (\`PUT /service-ms\`, a control route that is never shed), so the capacity halves to about ${integer(m.capacity * m.serviceMs / m.steppedServiceMs)} req/s (measured capacity × ${m.serviceMs}/${m.steppedServiceMs}); ` +
      `at ${seconds(timing.recoverAtMs / 1000)} it goes back to ${m.serviceMs} ms. The server acknowledged the changes at ${m.runs.map((run) => `${applied(run)} (${run.mode === 'adaptive' ? 'adaptive' : 'static'})`).join(', ')}. ` +
      `Each ${per} counts the requests *scheduled* in it (a request answered up to the ${m.timeoutMs} ms client timeout later still counts where it was sent), so every ${per} is offered the same load. ` +
      `The live limit is read from \`GET /limit\` (never shed) every ${timing.pollMs} ms; the plot shows every read, the tables the range read in each phase and the last value read in each ${per}. ` +
      `Recovered: the end of the first ${per} that starts ${SUSTAINED_BUCKETS} in a row at or above ${percent(RECOVERED_SHARE, 0)} of the new capacity, counted from the change.`,
    '',
    table(['protection', 'service time', 'capacity req/s', `back to ≥ ${percent(RECOVERED_SHARE, 0)}`, `lowest ${per} req/s`, 'mean goodput req/s', 'mean / capacity', 'mean latency of successes ms', '503', 'timeouts', 'live limit read'], summaryRows),
    '',
    '![Goodput and live limit over the capacity step](overload-step.svg)',
    '',
    `<details><summary>Every ${per}</summary>`,
    '',
    table(['s', 'service ms', ...m.runs.flatMap((run) => {
      const name = run.mode === 'adaptive' ? '(e)' : '(d)'
      return run === adaptive ? [`${name} goodput`, `${name} 503/s`, `${name} timeouts/s`, `${name} limit`] : [`${name} goodput`, `${name} 503/s`, `${name} timeouts/s`]
    })], timelineRows),
    '',
    '</details>',
    '',
    ...whyNote(phases.get(adaptive) as Phase[], m.poolSize),
    `**Target** for (e), the adaptive default: after each step, goodput back to at least ${percent(RECOVERED_SHARE, 0)} of the new capacity within ${TARGET_SECONDS} s: ${smoke ? 'not judged (smoke run)' : verdict(met)}. ` +
      adaptivePhases.map(sayPhase).join('; ') + '. ' +
      `The static default, for contrast: ${staticPhases.map((phase) => `${phase.name}: ${recoveredText(phase, bucketS)}, mean ${percent(phase.mean / phase.capacity, 0)} of the new capacity`).join('; ')}.`
  ].join('\n')
  const say = (phase: Phase): string => phase.recoveredAfterS === undefined ? `not within ${seconds((phase.toMs - phase.fromMs) / 1000)}` : `within ${seconds(phase.recoveredAfterS)}`
  return {
    markdown,
    chart,
    headline: `overload capacity step at ${STEP_LOAD}x: adaptive limit back to ≥ ${percent(RECOVERED_SHARE, 0)} of the new capacity ${say(adaptivePhases[0] as Phase)} after the capacity halved and ${say(adaptivePhases[1] as Phase)} after it came back (target ${TARGET_SECONDS} s); ` +
      `static default: ${staticPhases.every((phase) => phase.recoveredAfterS === undefined) ? `${say(staticPhases[0] as Phase)} either time` : staticPhases.map(say).join(' and ')} (mean goodput ${staticPhases.map((phase) => percent(phase.mean / phase.capacity, 0)).join(' and ')} of the new capacity)`
  }
}
