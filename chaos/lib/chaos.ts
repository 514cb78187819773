/**
 * The chaos run: the example app on its own PostgreSQL and Redis, under
 * steady open-loop traffic, through a scripted fault timeline, sampled every
 * 250 ms; then every acknowledged write is looked up in the database.
 */
import { performance } from 'node:perf_hooks'
import pg from 'pg'
import { closedLoop } from '../../bench/lib/open-loop.js'
import { Stack } from './stack.js'
import { Timeline, WINDOW_MS, sampleValue } from './timeline.js'
import type { Phase } from './timeline.js'
import { Traffic } from './traffic.js'

export interface ChaosOptions {
  /** Short phases and a fixed, low rate: checks that the run and its report work, in seconds. */
  smoke: boolean
}

export interface ChaosSettings {
  smoke: boolean
  maxConcurrent: number
  /** Steady requests per second, and during the overload phase. */
  steadyRate: number
  overloadRate: number
  /** Closed-loop lookups per second measured before the run (full run only). */
  capacity: number | undefined
  clientTimeoutMs: number
  players: number
  lookupIds: number
}

export interface LostWrite { id: number, acknowledged: number, stored: number | undefined, phase: string }

export interface ChaosResult {
  settings: ChaosSettings
  timeline: Timeline
  lostWrites: LostWrite[]
  durationMs: number
}

/** Players 1..10 000, seeded before the app starts. */
const PLAYERS = 10_000
const LOOKUP_IDS = 5000
const MAX_CONCURRENT = 100
const ADMIN_TOKEN = 'chaos-run-admin-token-0001'
const FLAG = 'player_lookup'

interface Step {
  name: string
  fault: string
  shaded: boolean
  /** Seconds, full run and smoke run. */
  seconds: number
  smokeSeconds: number
  begin?: (stack: Stack, traffic: Traffic, settings: ChaosSettings) => Promise<void> | void
  end?: (stack: Stack, traffic: Traffic, settings: ChaosSettings) => Promise<void> | void
}

/** The fault timeline: each step's `begin` runs at its start, its `end` when it is over. */
export const STEPS: readonly Step[] = [
  { name: 'baseline', fault: 'none', shaded: false, seconds: 10, smokeSeconds: 1.5 },
  {
    name: 'PostgreSQL stopped',
    fault: 'PostgreSQL stopped (fast shutdown), started again at the end',
    shaded: true,
    seconds: 15,
    smokeSeconds: 2,
    begin: async (stack) => { await stack.stopPostgres() },
    end: async (stack) => { await stack.startPostgres() }
  },
  // Longer than the breaker's half-open delay (30 s by default), so that it probes and closes.
  { name: 'PostgreSQL recovery', fault: 'none', shaded: false, seconds: 40, smokeSeconds: 1.5 },
  {
    name: 'Redis paused',
    fault: 'Redis frozen (SIGSTOP), resumed at the end',
    shaded: true,
    seconds: 10,
    smokeSeconds: 1.5,
    begin: (stack) => { stack.pauseRedis() },
    end: (stack) => { stack.resumeRedis() }
  },
  {
    name: 'overload 4x',
    fault: 'arrivals at 4x the steady rate',
    shaded: true,
    seconds: 8,
    smokeSeconds: 1.5,
    begin: (_stack, traffic, settings) => { traffic.setRate(settings.overloadRate) },
    end: (_stack, traffic, settings) => { traffic.setRate(settings.steadyRate) }
  },
  {
    name: `flag ${FLAG} off`,
    fault: `feature flag ${FLAG} switched off through the admin API, on again at the end`,
    shaded: true,
    seconds: 8,
    smokeSeconds: 1.5,
    begin: async (stack) => { await stack.setFlag(FLAG, false) },
    end: async (stack) => { await stack.setFlag(FLAG, true) }
  },
  { name: 'cool-down', fault: 'none', shaded: false, seconds: 8, smokeSeconds: 1.5 }
]

async function measureCapacity (baseUrl: string): Promise<number> {
  const result = await closedLoop({ url: `${baseUrl}/players/1`, concurrency: 2 * MAX_CONCURRENT / 5, warmupMs: 1000, durationMs: 3000 })
  return result.successesPerSecond
}

/** Scrapes /metrics every window while the run lasts. */
function sampleMetrics (stack: Stack, timeline: Timeline, startedAt: number): { stop: () => Promise<void> } {
  const state = { stopped: false }
  const loop = (async () => {
    while (!state.stopped) {
      const tickStart = performance.now()
      try {
        const body = await (await fetch(`${stack.baseUrl}/metrics`, { signal: AbortSignal.timeout(WINDOW_MS * 4) })).text()
        const window = timeline.window(tickStart - startedAt)
        window.breaker = sampleValue(body, 'circuit_breaker_state{name="database"}')
        window.inFlight = sampleValue(body, 'requests_in_flight')
        // The adaptive limit's gauge when the app exports it, else the configured maximum.
        window.limit = sampleValue(body, 'concurrency_limit') ?? MAX_CONCURRENT
        window.flag = sampleValue(body, `feature_flag_enabled{flag="${FLAG}"}`)
      } catch {
        // An unanswered scrape leaves the window's gauges empty: a gap on the timeline.
      }
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, WINDOW_MS - (performance.now() - tickStart))))
    }
  })()
  return { stop: async () => { state.stopped = true; await loop } }
}

/** Every acknowledged write whose value is not in the database (or was overwritten by an older one). */
async function findLostWrites (databaseUrl: string, timeline: Timeline): Promise<LostWrite[]> {
  const latest = new Map<number, { score: number, at: number }>()
  for (const write of timeline.writes) {
    const known = latest.get(write.id)
    if (known === undefined || write.score > known.score) latest.set(write.id, write)
  }
  if (latest.size === 0) return []
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    const { rows } = await client.query<{ id: number, score: number }>('SELECT id, score::float8 AS score FROM players WHERE id = ANY($1::int[])', [[...latest.keys()]])
    const stored = new Map(rows.map((row) => [row.id, row.score]))
    const lost: LostWrite[] = []
    for (const [id, write] of latest) {
      const value = stored.get(id)
      if (value === undefined || value < write.score) lost.push({ id, acknowledged: write.score, stored: value, phase: timeline.phaseAt(write.at)?.name ?? 'before the run' })
    }
    return lost
  } finally {
    await client.end()
  }
}

export async function runChaos (options: ChaosOptions, log: (line: string) => void = () => {}): Promise<ChaosResult> {
  log('starting PostgreSQL, Redis and the example app ...')
  const stack = await Stack.start({ maxConcurrent: MAX_CONCURRENT, players: PLAYERS, adminToken: ADMIN_TOKEN })
  try {
    const capacity = options.smoke ? undefined : await measureCapacity(stack.baseUrl)
    // Half the capacity keeps the steady state comfortable; 4x that is twice what the app can serve.
    const steadyRate = capacity === undefined ? 60 : Math.max(50, Math.round(capacity / 2))
    const settings: ChaosSettings = {
      smoke: options.smoke,
      maxConcurrent: MAX_CONCURRENT,
      steadyRate,
      overloadRate: 4 * steadyRate,
      capacity,
      clientTimeoutMs: 5000,
      players: PLAYERS,
      lookupIds: LOOKUP_IDS
    }
    if (capacity !== undefined) log(`capacity ${Math.round(capacity)} lookups/s; steady ${settings.steadyRate}/s, overload ${settings.overloadRate}/s`)

    const timeline = new Timeline()
    const startedAt = performance.now()
    const traffic = new Traffic({
      baseUrl: stack.baseUrl,
      lookupIds: LOOKUP_IDS,
      players: PLAYERS,
      timeoutMs: settings.clientTimeoutMs,
      startedAt,
      onAnswer: (answer) => timeline.record(answer),
      onAcknowledgedWrite: (write) => timeline.acknowledge(write)
    })
    const sampler = sampleMetrics(stack, timeline, startedAt)
    traffic.setRate(settings.steadyRate)
    try {
      for (const step of STEPS) {
        const phase: Phase = { name: step.name, fault: step.fault, shaded: step.shaded, startAt: performance.now() - startedAt, endAt: 0 }
        timeline.phases.push(phase)
        log(`${(phase.startAt / 1000).toFixed(1)} s: ${step.name}`)
        await step.begin?.(stack, traffic, settings)
        const until = startedAt + phase.startAt + 1000 * (options.smoke ? step.smokeSeconds : step.seconds)
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, until - performance.now())))
        await step.end?.(stack, traffic, settings)
        phase.endAt = performance.now() - startedAt
      }
    } finally {
      await traffic.stop()
      await sampler.stop()
    }
    const durationMs = performance.now() - startedAt
    const lostWrites = await findLostWrites(stack.databaseUrl, timeline)
    return { settings, timeline, lostWrites, durationMs }
  } finally {
    await stack.stop()
  }
}
