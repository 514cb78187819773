/**
 * Overload benchmark: an app whose only route runs a real
 * PostgreSQL query with a known service time on a pool of a known size, driven
 * by an open-loop generator at 1x, 2x and 4x its measured capacity, (a) with
 * no protection, (b) with @fastify/under-pressure as its README configures it,
 * (c) with this library's load shedding, its limit matched to the pool, (d) with
 * load shedding's static limit at its default and (e) with its adaptive limit,
 * the plugin's default. Two more scenarios in the same run: a capacity step
 * (bench/overload-step.ts) and a CPU-bound route (bench/overload-cpu.ts).
 *
 * Alone: `npm run bench -- --only=overload` (add `--smoke` for a quick check).
 */
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { startPostgres } from '../local-services/index.js'
import { barChart } from './lib/svg.js'
import type { BarGroup } from './lib/svg.js'
import { closedLoop } from './lib/open-loop.js'
import { ADAPTIVE_DEFAULT_LABEL, STATIC_DEFAULT_LABEL, drive } from './lib/overload-cells.js'
import type { Cell, Mode, ServerFor } from './lib/overload-cells.js'
import { table, verdict } from './lib/report.js'
import type { BenchOptions, Section } from './lib/report.js'
import { startBenchServer } from './lib/server-process.js'
import type { BenchServer } from './lib/server-process.js'
import { fixed, integer, percent } from './lib/stats.js'
import { CPU_SLICES, CPU_SLICE_MS, FULL_CPU, SMOKE_CPU, cpuBound, cpuBoundReport } from './overload-cpu.js'
import type { CpuMeasurements } from './overload-cpu.js'
import { FULL_STEP, SMOKE_STEP, capacityStep, capacityStepReport } from './overload-step.js'
import type { StepMeasurements } from './overload-step.js'

const SERVER_SCRIPT = fileURLToPath(new URL('./overload-server.ts', import.meta.url))
/** The servers' `application_name`, unique to this run (the smoke run may share the tests' database). */
const APPLICATION_NAME = `fastify-resilience-overload-bench-${process.pid}`

/** Connections of the app's pool. */
const POOL_SIZE = 10
/** `pg_sleep` of each request (ms). */
const SERVICE_MS = 20
/** Load shedding's `maxConcurrent`: the pool's connections busy, as many requests waiting for one. */
const LIMIT = 2 * POOL_SIZE
/** Other limits tried at 4x, as multiples of the pool size. */
const SWEEP = [1, 1.5, 2, 3]
/** Multiples of the measured capacity. */
const LOADS = [1, 2, 4]
/** Closed-loop requests in flight while measuring the capacity. */
const CAPACITY_CONCURRENCY = 3 * POOL_SIZE

/**
 * @fastify/under-pressure with the thresholds of its README's usage example,
 * except `maxRssBytes` (see {@link overload}'s setup paragraph).
 */
const UNDER_PRESSURE = {
  maxEventLoopDelay: 1000,
  maxHeapUsedBytes: 100_000_000,
  maxEventLoopUtilization: 0.98
}
/** The README's `maxRssBytes`, left out: below the idle RSS of this server. */
const README_MAX_RSS_BYTES = 100_000_000

interface Timing {
  /** Client timeout (ms). */
  timeoutMs: number
  warmupMs: number
  durationMs: number
  sweepWarmupMs: number
  sweepDurationMs: number
  capacityWarmupMs: number
  capacityDurationMs: number
}

const FULL: Timing = {
  timeoutMs: 1000,
  warmupMs: 2000,
  durationMs: 20_000,
  sweepWarmupMs: 2000,
  sweepDurationMs: 6000,
  capacityWarmupMs: 2000,
  capacityDurationMs: 5000
}

const SMOKE: Timing = {
  timeoutMs: 250,
  warmupMs: 100,
  durationMs: 300,
  sweepWarmupMs: 100,
  sweepDurationMs: 300,
  capacityWarmupMs: 100,
  capacityDurationMs: 400
}

const MODES: ReadonlyArray<{ mode: Mode, label: string }> = [
  { mode: 'none', label: '(a) no protection' },
  { mode: 'under-pressure', label: '(b) @fastify/under-pressure' },
  { mode: 'load-shedding', label: `(c) load shedding, maxConcurrent ${LIMIT}` },
  { mode: 'load-shedding-default', label: STATIC_DEFAULT_LABEL },
  { mode: 'adaptive', label: ADAPTIVE_DEFAULT_LABEL }
]
/** Goodput by which (e) may trail (d) in a cell and still count as no worse: noise (share of capacity). */
const NOISE = 0.02

const ms = (value: number): string => fixed(value, 1)
const mb = (bytes: number): string => `${integer(bytes / 1e6)} MB`

/** A database for the run: the one named by the environment, else a throwaway one. */
async function database (smoke: boolean, log: (line: string) => void): Promise<{ url: string, stop: () => Promise<void> }> {
  const variable = smoke ? 'RESILIENCE_TEST_DATABASE_URL' : 'RESILIENCE_BENCH_DATABASE_URL'
  const url = process.env[variable]
  if (url !== undefined && url !== '') {
    log(`overload: PostgreSQL from ${variable}`)
    return { url, stop: async () => {} }
  }
  log('overload: starting a throwaway PostgreSQL')
  return await startPostgres()
}

/**
 * Runs the overload benchmark and returns its section of RESULTS.md: the
 * measured capacity, then goodput, latency of the successes and the shares of
 * 503s, timeouts and errors for each protection at 1x, 2x and 4x capacity,
 * the load-shedding limit sweep, the targets of (c) and (e), then the
 * capacity step and the CPU-bound route with their targets.
 */
export async function overload (options: BenchOptions): Promise<Section> {
  const { smoke, log } = options
  const timing = smoke ? SMOKE : FULL
  const db = await database(smoke, log)
  const admin = new pg.Client({ connectionString: db.url })
  admin.on('error', () => {})
  let server: BenchServer | undefined
  try {
    await admin.connect()
    const maxConnections = Number((await admin.query<{ max_connections: string }>('SHOW max_connections')).rows[0]?.max_connections)
    if (!(maxConnections >= POOL_SIZE + 5)) throw new Error(`overload: PostgreSQL allows ${maxConnections} connections, the benchmark needs ${POOL_SIZE + 5}`)

    const envOf = (mode: Mode, limit = LIMIT, cpuSliceMs = CPU_SLICE_MS): Record<string, string> => ({
      OVERLOAD_MODE: mode,
      OVERLOAD_DATABASE_URL: db.url,
      OVERLOAD_POOL_SIZE: String(POOL_SIZE),
      OVERLOAD_SERVICE_MS: String(SERVICE_MS),
      OVERLOAD_APPLICATION_NAME: APPLICATION_NAME,
      OVERLOAD_MAX_CONCURRENT: String(limit),
      OVERLOAD_CPU_SLICES: String(CPU_SLICES),
      OVERLOAD_CPU_SLICE_MS: String(cpuSliceMs),
      OVERLOAD_UNDER_PRESSURE: JSON.stringify(UNDER_PRESSURE)
    })
    // Until the stopped server's connections are gone, so that no query of
    // one cell still holds the database in the next.
    const drained = async (): Promise<void> => {
      const deadline = performance.now() + 15_000
      while (true) {
        const { rows } = await admin.query<{ count: string }>('SELECT count(*) FROM pg_stat_activity WHERE application_name = $1', [APPLICATION_NAME])
        if (Number(rows[0]?.count) === 0) return
        if (performance.now() > deadline) throw new Error('overload: the previous server\'s connections did not close')
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    }
    const stopServer = async (): Promise<void> => {
      const stopping = server
      server = undefined
      await stopping?.stop()
      await drained()
    }
    let serverEnv: string | undefined
    const freshServer = async (env: Record<string, string>): Promise<BenchServer> => {
      await stopServer()
      serverEnv = undefined
      server = await startBenchServer(SERVER_SCRIPT, env)
      return server
    }
    // A full run starts a fresh server, with an idle pool, for every cell;
    // smoke mode keeps one per protection (its queues may leak from one load
    // to the next: smoke mode judges nothing).
    const serverFor: ServerFor = async (mode, settings = {}) => {
      const env = envOf(mode, LIMIT, settings.cpuSliceMs)
      if (smoke && server !== undefined && serverEnv === JSON.stringify(env)) return server
      const started = await freshServer(env)
      serverEnv = JSON.stringify(env)
      return started
    }
    const work = async (target: BenchServer, rate: number, warmupMs: number, durationMs: number): Promise<Cell> =>
      await drive(target, { path: '/work', rate, warmupMs, durationMs, timeoutMs: timing.timeoutMs })

    // Capacity: a saturating closed loop against the unprotected app.
    await drained()
    const first = await serverFor('none')
    const memory = await (await fetch(`${first.url}/memory`)).json() as NodeJS.MemoryUsage
    const measured = await closedLoop({ url: `${first.url}/work`, concurrency: CAPACITY_CONCURRENCY, warmupMs: timing.capacityWarmupMs, durationMs: timing.capacityDurationMs })
    const capacity = measured.successesPerSecond
    if (!(capacity > 0)) throw new Error(`overload: measured no capacity (${measured.failures} failures)`)
    log(`overload: capacity ${integer(capacity)} req/s (theoretical ${integer(POOL_SIZE / (SERVICE_MS / 1000))})`)
    if (!smoke) await stopServer()

    const cells = new Map<Mode, Cell[]>()
    for (const { mode, label } of MODES) {
      const row: Cell[] = []
      cells.set(mode, row)
      for (const load of LOADS) {
        const cell = await work(await serverFor(mode), load * capacity, timing.warmupMs, timing.durationMs)
        row.push(cell)
        log(`overload: ${label} at ${load}x: goodput ${integer(cell.goodput)} req/s, p99 ${ms(cell.p99)} ms, 503 ${percent(cell.shed)}, timeouts ${percent(cell.timeouts)}, limit ${cell.limit ?? '-'}, ` +
          `server CPU ${percent(cell.serverCpu, 0)}, generator CPU ${percent(cell.generatorCpu, 0)}, send lag p99 ${ms(cell.sendLagP99Ms)} ms`)
      }
    }

    // The limit: other multiples of the pool size at 4x.
    const sweepLimits = smoke ? [LIMIT] : SWEEP.map((factor) => Math.round(factor * POOL_SIZE))
    const sweep: Array<{ limit: number, cell: Cell }> = []
    for (const limit of sweepLimits) {
      const target = await freshServer(envOf('load-shedding', limit))
      const cell = await work(target, 4 * capacity, timing.sweepWarmupMs, timing.sweepDurationMs)
      sweep.push({ limit, cell })
      log(`overload: sweep maxConcurrent ${limit} at 4x: goodput ${integer(cell.goodput)} req/s, p99 ${ms(cell.p99)} ms, send lag p99 ${ms(cell.sendLagP99Ms)} ms`)
    }

    const step = await capacityStep(serverFor, log, { timing: smoke ? SMOKE_STEP : FULL_STEP, serviceMs: SERVICE_MS, steppedServiceMs: 2 * SERVICE_MS, timeoutMs: timing.timeoutMs, capacity, poolSize: POOL_SIZE })
    const cpu = await cpuBound(serverFor, log, smoke ? SMOKE_CPU : FULL_CPU, smoke)
    await stopServer()

    return report({ smoke, timing, capacity, memory, cells, sweep, step, cpu })
  } finally {
    await server?.stop().catch(() => {})
    await admin.end().catch(() => {})
    await db.stop()
  }
}

interface Measurements {
  smoke: boolean
  timing: Timing
  capacity: number
  memory: NodeJS.MemoryUsage
  cells: Map<Mode, Cell[]>
  sweep: Array<{ limit: number, cell: Cell }>
  step: StepMeasurements
  cpu: CpuMeasurements
}

function report ({ smoke, timing, capacity, memory, cells, sweep, step, cpu }: Measurements): Section {
  const theoretical = POOL_SIZE / (SERVICE_MS / 1000)
  const cellOf = (mode: Mode, load: number): Cell => cells.get(mode)?.[LOADS.indexOf(load)] as Cell
  const all = [...cells.values()].flat().concat(sweep.map(({ cell }) => cell))
  const top = LOADS[LOADS.length - 1] as number
  const shedding = cellOf('load-shedding', top)
  const sheddingBase = cellOf('load-shedding', LOADS[0] as number)
  const goodputShare = shedding.goodput / capacity
  const p99Ratio = shedding.p99 / sheddingBase.p99
  const met = goodputShare >= 0.9 && p99Ratio <= 3
  // (e) against the issue's targets, and against (d) at every load.
  const adaptive = cellOf('adaptive', top)
  const adaptiveBase = cellOf('adaptive', LOADS[0] as number)
  const adaptiveShare = adaptive.goodput / capacity
  const adaptiveRatio = adaptive.p99 / adaptiveBase.p99
  const adaptiveMet = adaptiveShare >= 0.95 && adaptiveRatio <= 1.5
  const baseShedOk = adaptiveBase.shed <= 0.01
  const behind = LOADS.filter((load) => cellOf('adaptive', load).goodput < cellOf('load-shedding-default', load).goodput - NOISE * capacity)
  const defaultOk = baseShedOk && behind.length === 0

  const rows = MODES.flatMap(({ mode, label }) => LOADS.map((load) => {
    const cell = cellOf(mode, load)
    return [label, `${load}x`, integer(cell.offered), integer(cell.goodput), percent(cell.goodput / capacity, 0), ms(cell.p50), ms(cell.p99),
      percent(cell.shed), percent(cell.timeouts), percent(cell.errors), percent(cell.serverCpu, 0), cell.limit === null ? '-' : String(cell.limit)]
  }))
  const sweepRows = sweep.map(({ limit, cell }) => [
    `${limit}${limit === LIMIT ? ' (chosen)' : ''}`, String(Math.max(1, Math.floor(0.95 * limit))), integer(cell.goodput), percent(cell.goodput / capacity, 0),
    ms(cell.p50), ms(cell.p99), percent(cell.shed), percent(cell.timeouts)
  ])
  const groups: BarGroup[] = LOADS.map((load) => ({
    title: `${load}x capacity (${integer(load * capacity)} req/s offered)`,
    bars: MODES.map(({ mode, label }) => {
      const cell = cellOf(mode, load)
      return { label, value: cell.goodput, note: `${integer(cell.goodput)} req/s (${percent(cell.goodput / capacity, 0)})` }
    })
  }))
  const chart = barChart('Overload: goodput (2xx within the client timeout)', `req/s; capacity ${integer(capacity)} req/s`, groups)
  const maxServerCpu = Math.max(...all.map((cell) => cell.serverCpu))
  const maxGeneratorCpu = Math.max(...all.map((cell) => cell.generatorCpu))
  const maxLag = (list: Cell[]): number => Math.max(...list.map((cell) => cell.sendLagP99Ms))
  const sheddingCells = [...(cells.get('load-shedding') ?? []), ...sweep.map(({ cell }) => cell)]
  const otherCells = [...(cells.get('none') ?? []), ...(cells.get('under-pressure') ?? [])]
  const none = cellOf('none', top)
  const pressure = cellOf('under-pressure', top)
  const stepReport = capacityStepReport(step, smoke)
  const cpuReport = cpuBoundReport(cpu, smoke)

  const markdown = [
    ...(smoke ? ['*Smoke run: a fraction of a second per cell, one server per protection, shorter client timeout; the figures mean nothing.*', ''] : []),
    `**Setup.** \`GET /work\` runs \`SELECT pg_sleep(${SERVICE_MS / 1000})\` on a \`pg\` pool of ${POOL_SIZE} connections to a local PostgreSQL, ` +
      `so its capacity is ${POOL_SIZE} / ${SERVICE_MS} ms = ${integer(theoretical)} req/s in theory; ` +
      `measured: **${integer(capacity)} req/s** (${percent(capacity / theoretical, 0)} of theory; ${CAPACITY_CONCURRENCY} requests kept in flight by a closed loop against (a) for ${timing.capacityDurationMs / 1000} s after ${timing.capacityWarmupMs / 1000} s of warm-up). ` +
      `The service time is ${SERVICE_MS} ms rather than 10 ms to keep the rates moderate on this 2-core machine, where the generator, the server and PostgreSQL share the cores: ` +
      `4x is then ${integer(4 * capacity)} req/s, and an unprotected server that times every client out makes each of them open a new connection.`,
    '',
    '**Load.** An open-loop generator (bench/lib/open-loop.ts, in the benchmark\'s process; the server runs in a child process) sends GETs at a fixed rate, evenly spaced, whether or not earlier ones were answered, ' +
      `at 1x, 2x and 4x the measured capacity, for ${timing.warmupMs / 1000} s of warm-up (not counted) and then ${timing.durationMs / 1000} s counted per cell. ` +
      `Latency is measured from each request's scheduled send time (no coordinated omission). Client timeout ${timing.timeoutMs} ms: a request not answered by then is abandoned, its connection reset, and counted as a timeout. ` +
      'Goodput is 2xx answers within the timeout per second; p50 and p99 are those of the successes; shares are of all requests sent. ' +
      'Every cell gets a fresh server process with its pool already connected, and the next one starts only when the previous server\'s connections are gone from `pg_stat_activity`. ' +
      '1x is the measured capacity itself, a utilisation of about 1, so some queueing shows there already. ' +
      'Goodput can exceed 100 % of capacity by the noise of the capacity measurement. ' +
      `Highest CPU use in any cell: server ${percent(maxServerCpu, 0)} of one core, generator ${percent(maxGeneratorCpu, 0)}. ` +
      `The generator's p99 send lag (how late requests left compared with their schedule, included in the latencies) was at most ${ms(maxLag(sheddingCells))} ms in the load-shedding cells ` +
      `and ${ms(maxLag(otherCells))} ms in the others, where every abandoned request's connection is reset and a new one opened.`,
    '',
    '**Protections.** The route handler is the same in all five.',
    '',
    '- (a) none: requests wait in the pool\'s queue for as long as it takes. Above capacity the queue grows by the excess every second; once the wait passes the client timeout, ' +
      'the pool spends its time on requests whose clients have already given up.',
    `- (b) @fastify/under-pressure with its README's usage example: \`maxEventLoopDelay: ${UNDER_PRESSURE.maxEventLoopDelay}\`, \`maxHeapUsedBytes: ${UNDER_PRESSURE.maxHeapUsedBytes}\`, \`maxEventLoopUtilization: ${UNDER_PRESSURE.maxEventLoopUtilization}\` (other options at their defaults). ` +
      `Its \`maxRssBytes: ${README_MAX_RSS_BYTES}\` is left out: this server's idle RSS is already ${mb(memory.rss)} (heap used ${mb(memory.heapUsed)}), ${memory.rss > README_MAX_RSS_BYTES ? 'above it, so it would refuse every request at any load' : 'close to it, so it would refuse requests for the process\'s size rather than its load'}. ` +
      'Its event-loop thresholds cannot see this overload: the requests wait on the database, not on the CPU. ' +
      'Only the heap threshold can trip, once the backlog of waiting requests has grown the heap past 100 MB (a diagnostic run with a `pressureHandler` counting the reasons saw only `heapUsedBytes`). ' +
      'By then the backlog already holds more than a client timeout of work: its 503s refuse the new requests, but the pool keeps serving abandoned ones.',
    `- (c) \`loadShedding({ maxConcurrent: ${LIMIT} })\`: twice the pool, so ${POOL_SIZE} requests hold the connections and up to ${Math.floor(0.95 * LIMIT) - POOL_SIZE} more wait for one ` +
      `(normal-priority routes are admitted up to \`floor(0.95 × maxConcurrent)\` = ${Math.floor(0.95 * LIMIT)}, the default \`priorityShares.normal\`); beyond that it answers 503 at once. ` +
      'A freed connection is taken at once by a waiting request, so the pool does not idle while the next request travels to it, and the wait stays under one service time. ' +
      `A limit at the pool size (${Math.floor(0.95 * POOL_SIZE)} admitted, fewer than the connections) leaves connections idle and loses goodput; a higher one only makes the admitted requests wait longer. ` +
      'Any limit that admits a few more requests than the pool has connections keeps the pool busy in this steady test; twice the pool is a simple rule that also leaves room for a service time that varies. ' +
      `The second table is the experiment behind the choice: the limits tried at 4x, ${timing.sweepDurationMs / 1000} s counted each after ${timing.sweepWarmupMs / 1000} s of warm-up, a fresh server each.`,
    '- (d) `loadShedding({ limit: \'static\' })`: the static limit at its default, `maxConcurrent` 1000 (950 admitted at normal priority): what a user got without tuning before the adaptive limit.',
    '- (e) `loadShedding()`: the adaptive limit, the default, with its settings\' defaults (`maxConcurrent` 1000 as its ceiling): the limit is learnt from the latency of admitted, successful requests. ' +
      'The last column is the server\'s live limit (`app.loadShedding.limit`) at the end of each cell.',
    '',
    table(['protection', 'load', 'offered req/s', 'goodput req/s', 'goodput / capacity', 'p50 ms', 'p99 ms', '503', 'timeouts', 'errors', 'server CPU', 'limit at end'], rows),
    '',
    '![Goodput per protection and load](overload.svg)',
    '',
    `Load shedding's limit at 4x (${integer(4 * capacity)} req/s offered):`,
    '',
    table(['maxConcurrent', 'admitted (normal)', 'goodput req/s', 'goodput / capacity', 'p50 ms', 'p99 ms', '503', 'timeouts'], sweepRows),
    '',
    `**Target** for (c) at 4x: goodput at least 90 % of capacity and the p99 of successes within 3x of its p99 at 1x: ${verdict(met)}. ` +
      `Goodput ${integer(shedding.goodput)} req/s = ${percent(goodputShare)} of capacity${goodputShare >= 0.9 ? '' : ` (missed by ${percent(0.9 - goodputShare)} of capacity)`}; ` +
      `p99 ${ms(shedding.p99)} ms against ${ms(sheddingBase.p99)} ms at 1x = ${fixed(p99Ratio)}x${p99Ratio <= 3 ? '' : ` (missed by ${fixed(p99Ratio - 3)}x)`}. ` +
      `For comparison at 4x: no protection ${percent(none.goodput / capacity, 0)} of capacity with ${percent(none.timeouts, 0)} timeouts, under-pressure ${percent(pressure.goodput / capacity, 0)} with ${percent(pressure.timeouts, 0)} timeouts and ${percent(pressure.shed, 0)} 503s.`,
    '',
    `**Target** for (e) at 4x: goodput at least 95 % of capacity and the p99 of successes within 1.5x of its p99 at 1x: ${verdict(adaptiveMet)}. ` +
      `Goodput ${integer(adaptive.goodput)} req/s = ${percent(adaptiveShare)} of capacity${adaptiveShare >= 0.95 ? '' : ` (missed by ${percent(0.95 - adaptiveShare)} of capacity)`}; ` +
      `p99 ${ms(adaptive.p99)} ms against ${ms(adaptiveBase.p99)} ms at 1x = ${fixed(adaptiveRatio)}x${adaptiveRatio <= 1.5 ? '' : ` (missed by ${fixed(adaptiveRatio - 1.5)}x)`}; limit at the end ${adaptive.limit ?? '-'}.`,
    '',
    `**Target** for (e) at 1x: at most 1 % of 503s: ${verdict(baseShedOk)}. 503 ${percent(adaptiveBase.shed)}${baseShedOk ? '' : ` (missed by ${percent(adaptiveBase.shed - 0.01)})`}.`,
    '',
    `**Target** for (e) against (d), the static default, at 1x, 2x and 4x: goodput never below (d)'s by more than ${percent(NOISE, 0)} of capacity (noise): ${verdict(behind.length === 0)}. ` +
      LOADS.map((load) => `${load}x: ${integer(cellOf('adaptive', load).goodput)} against ${integer(cellOf('load-shedding-default', load).goodput)} req/s`).join(', ') + '.',
    '',
    '**Adaptive as the default?** Issue 18 makes it the default only if it sheds at most 1 % at 1x and is never worse than the static default elsewhere. ' +
      (defaultOk
        ? '**This run supports it**: both conditions are met.'
        : `**This run does not support it**: ${[baseShedOk ? '' : 'it sheds more than 1 % at 1x', behind.length === 0 ? '' : `it is behind the static default at ${behind.map((load) => `${load}x`).join(', ')}`].filter((reason) => reason !== '').join(', and ')}.`),
    '',
    stepReport.markdown,
    '',
    cpuReport.markdown
  ].join('\n')

  return {
    title: 'Overload',
    command: 'npm run bench -- --only=overload',
    markdown,
    charts: { 'overload.svg': chart, 'overload-step.svg': stepReport.chart },
    headlines: [
      `overload 4x: adaptive limit goodput ${percent(adaptiveShare, 0)} of capacity (static default ${percent(cellOf('load-shedding-default', top).goodput / capacity, 0)}), p99 ${fixed(adaptiveRatio, 1)}x of 1x, 503 at 1x ${percent(adaptiveBase.shed)}`,
      `overload 4x: load shedding goodput ${percent(goodputShare, 0)} of capacity (no protection ${percent(none.goodput / capacity, 0)}, under-pressure ${percent(pressure.goodput / capacity, 0)}), p99 ${fixed(p99Ratio, 1)}x of 1x`,
      stepReport.headline,
      cpuReport.headline
    ]
  }
}
