/**
 * The overload benchmark's CPU-bound route: `GET /cpu` uses no database, so
 * the event loop is the bottleneck. Its capacity is measured with a closed
 * loop against the unprotected server, then the static and the adaptive
 * defaults of load shedding face 1x, 2x and 4x of it. Run by
 * bench/overload.ts, which owns the servers.
 */
import { performance } from 'node:perf_hooks'
import { closedLoop } from './lib/open-loop.js'
import { ADAPTIVE_DEFAULT_LABEL, STATIC_DEFAULT_LABEL, drive } from './lib/overload-cells.js'
import type { Cell, Mode, ServerFor } from './lib/overload-cells.js'
import { table, verdict } from './lib/report.js'
import { fixed, integer, percent } from './lib/stats.js'

/** Slices of busy CPU work per request, each followed by a turn of the event loop. */
export const CPU_SLICES = 4
/** Length of one slice (ms). */
export const CPU_SLICE_MS = 0.5
/** The slice of the heavier variant, which tells the cost of refusals apart from the limit's choices (ms). */
const HEAVY_SLICE_MS = 1
/** Multiples of the measured capacity. */
const LOADS = [1, 2, 4]
/** Closed-loop requests in flight while measuring the capacity: enough that the event loop never waits for the next one. */
const CAPACITY_CONCURRENCY = 8
const TARGET_SHARE = 0.9
const MODES: ReadonlyArray<{ mode: Mode, label: string }> = [
  { mode: 'load-shedding-default', label: STATIC_DEFAULT_LABEL },
  { mode: 'adaptive', label: ADAPTIVE_DEFAULT_LABEL }
]

export interface CpuTiming {
  capacityWarmupMs: number
  capacityDurationMs: number
  warmupMs: number
  durationMs: number
  timeoutMs: number
}

export const FULL_CPU: CpuTiming = { capacityWarmupMs: 1500, capacityDurationMs: 3000, warmupMs: 1500, durationMs: 6000, timeoutMs: 1000 }
export const SMOKE_CPU: CpuTiming = { capacityWarmupMs: 100, capacityDurationMs: 300, warmupMs: 100, durationMs: 300, timeoutMs: 250 }

/** One variant of the route: its capacity and its cells. */
export interface CpuVariant {
  sliceMs: number
  capacity: number
  /** Server CPU while the capacity was measured, share of one core. */
  capacityCpu: number
  loads: number[]
  cells: Map<Mode, Cell[]>
}

export interface CpuMeasurements {
  timing: CpuTiming
  main: CpuVariant
  heavy: CpuVariant
}

async function variant (serverFor: ServerFor, log: (line: string) => void, timing: CpuTiming, sliceMs: number, loads: number[], smoke: boolean): Promise<CpuVariant> {
  const first = await serverFor('none', { cpuSliceMs: sliceMs })
  const cpuBefore = await first.cpu()
  const started = performance.now()
  const measured = await closedLoop({ url: `${first.url}/cpu`, concurrency: CAPACITY_CONCURRENCY, warmupMs: timing.capacityWarmupMs, durationMs: timing.capacityDurationMs })
  const capacityCpu = (await first.cpu() - cpuBefore) / 1000 / (performance.now() - started)
  const capacity = measured.successesPerSecond
  if (!(capacity > 0)) throw new Error(`overload: measured no capacity for /cpu (${measured.failures} failures)`)
  log(`overload: CPU-bound, ${CPU_SLICES} × ${sliceMs} ms: capacity ${integer(capacity)} req/s (at most ${integer(1000 / (CPU_SLICES * sliceMs))} from the work alone), server CPU ${percent(capacityCpu, 0)}`)
  const cells = new Map<Mode, Cell[]>(MODES.map(({ mode }) => [mode, []]))
  // The protections alternate at each load, so that a slow spell of the
  // machine hits both; smoke mode runs one protection after the other, to
  // reuse its server.
  const order = smoke ? MODES.flatMap((mode) => loads.map((load) => ({ ...mode, load }))) : loads.flatMap((load) => MODES.map((mode) => ({ ...mode, load })))
  for (const { mode, label, load } of order) {
    const cell = await drive(await serverFor(mode, { cpuSliceMs: sliceMs }), { path: '/cpu', rate: load * capacity, warmupMs: timing.warmupMs, durationMs: timing.durationMs, timeoutMs: timing.timeoutMs })
    cells.get(mode)?.push(cell)
    log(`overload: CPU-bound, ${CPU_SLICES} × ${sliceMs} ms, ${label} at ${load}x: goodput ${integer(cell.goodput)} req/s, p99 ${fixed(cell.p99, 1)} ms, 503 ${percent(cell.shed)}, timeouts ${percent(cell.timeouts)}, limit ${cell.limit ?? '-'}, ` +
      `server CPU ${percent(cell.serverCpu, 0)}, generator CPU ${percent(cell.generatorCpu, 0)}, send lag p99 ${fixed(cell.sendLagP99Ms, 1)} ms`)
  }
  return { sliceMs, capacity, capacityCpu, loads, cells }
}

/**
 * Measures the capacity of `GET /cpu`, then runs each load against a fresh
 * server per protection; then the same at 4x only with slices twice as long.
 */
export async function cpuBound (serverFor: ServerFor, log: (line: string) => void, timing: CpuTiming, smoke: boolean): Promise<CpuMeasurements> {
  const main = await variant(serverFor, log, timing, CPU_SLICE_MS, LOADS, smoke)
  const heavy = await variant(serverFor, log, timing, HEAVY_SLICE_MS, [LOADS[LOADS.length - 1] as number], smoke)
  return { timing, main, heavy }
}

const cellOf = (v: CpuVariant, mode: Mode, load: number): Cell => v.cells.get(mode)?.[v.loads.indexOf(load)] as Cell

/** Goodput per core-second of server CPU, as a share of the capacity run's: what the refusals cost, without the machine's swings in CPU. */
const perCpuShare = (v: CpuVariant, cell: Cell): number => (cell.goodput / cell.serverCpu) / (v.capacity / v.capacityCpu)

function rowsOf (v: CpuVariant): string[][] {
  return MODES.flatMap(({ mode, label }) => v.loads.map((load) => {
    const cell = cellOf(v, mode, load)
    return [label, `${CPU_SLICES} × ${v.sliceMs} ms`, `${load}x`, integer(cell.offered), integer(cell.goodput), percent(cell.goodput / v.capacity, 0), percent(perCpuShare(v, cell), 0),
      fixed(cell.p50, 1), fixed(cell.p99, 1), percent(cell.shed), percent(cell.timeouts), percent(cell.serverCpu, 0), percent(cell.generatorCpu, 0), cell.limit === null ? '-' : String(cell.limit)]
  }))
}

/**
 * What a refusal costs, from one cell with refusals: the server's CPU minus
 * what its successes cost at capacity, per refusal (ms), and the goodput share
 * that cost leaves at `load` (a core spent on successes and refusals only).
 */
function refusalCost (v: CpuVariant, cell: Cell, load: number): { perRefusalMs: number, perSuccessMs: number, ceiling: number } {
  const perSuccessMs = (v.capacityCpu * 1000) / v.capacity
  const perRefusalMs = (cell.serverCpu * 1000 - cell.goodput * perSuccessMs) / (cell.shed * cell.offered)
  return { perRefusalMs, perSuccessMs, ceiling: (perSuccessMs - load * perRefusalMs) / (perSuccessMs - perRefusalMs) }
}

/** Markdown and headline of the CPU-bound scenario. */
export function cpuBoundReport ({ timing, main, heavy }: CpuMeasurements, smoke: boolean): { markdown: string, headline: string } {
  const top = LOADS[LOADS.length - 1] as number
  const adaptive = cellOf(main, 'adaptive', top)
  const staticCell = cellOf(main, 'load-shedding-default', top)
  const share = adaptive.goodput / main.capacity
  const met = share >= TARGET_SHARE
  const cost = refusalCost(main, adaptive, top)
  const heavyAdaptive = cellOf(heavy, 'adaptive', top)
  const heavyCost = refusalCost(heavy, heavyAdaptive, top)
  const us = (ms: number): string => `${integer(ms * 1000)} µs`
  const markdown = [
    '### CPU-bound route',
    '',
    ...(smoke ? ['*Smoke run: a fraction of a second per cell; nothing is judged.*', ''] : []),
    `**Setup.** \`GET /cpu\` uses no database: ${CPU_SLICES} slices of ${CPU_SLICE_MS} ms of busy work (a loop on \`performance.now()\`), each followed by \`await setImmediate()\`, so ${fixed(CPU_SLICES * CPU_SLICE_MS, 1)} ms of CPU per request and at most ${integer(1000 / (CPU_SLICES * CPU_SLICE_MS))} req/s from the work alone. ` +
      'Requests admitted together take turns on the event loop, and each one\'s latency grows with how many are in flight, as in a real handler whose work is cut by awaits. ' +
      '(A fully synchronous handler would finish each request before the server reads the next one: a single request in flight as the load shedder counts them, from admission to the response\'s `close`, and the queue in the socket buffers, where no concurrency limit can see it.) ' +
      `Capacity, measured with ${CAPACITY_CONCURRENCY} requests in flight in a closed loop against (a) for ${seconds(timing.capacityDurationMs)} after ${seconds(timing.capacityWarmupMs)} of warm-up: **${integer(main.capacity)} req/s**, the server using ${percent(main.capacityCpu, 0)} of a core. ` +
      `Then the open-loop generator at 1x, 2x and 4x of it, ${seconds(timing.warmupMs)} of warm-up and ${seconds(timing.durationMs)} counted per cell, a fresh server each, the two protections alternating at each load; client timeout ${timing.timeoutMs} ms. ` +
      'The server and the generator are separate processes, not pinned, sharing the machine\'s two cores with PostgreSQL (idle here) and whatever else runs. ' +
      '*Goodput per server CPU* divides each cell\'s goodput by the server\'s CPU (share of a core) and compares it with the capacity run\'s: it leaves out how much CPU the machine happened to give the server, and shows what refusals and abandoned requests cost. ' +
      `The last two rows repeat 4x with slices of ${HEAVY_SLICE_MS} ms (${fixed(CPU_SLICES * HEAVY_SLICE_MS, 1)} ms per request; capacity ${integer(heavy.capacity)} req/s, server at ${percent(heavy.capacityCpu, 0)} of a core), to tell the cost of refusals apart from the limit's choices.`,
    '',
    table(['protection', 'work', 'load', 'offered req/s', 'goodput req/s', 'goodput / capacity', 'goodput per server CPU', 'p50 ms', 'p99 ms', '503', 'timeouts', 'server CPU', 'generator CPU', 'limit at end'], [...rowsOf(main), ...rowsOf(heavy)]),
    '',
    `**Target** for (e), the adaptive default, at ${top}x: goodput at least ${percent(TARGET_SHARE, 0)} of capacity: ${smoke ? 'not judged (smoke run)' : verdict(met)}. ` +
      `Goodput ${integer(adaptive.goodput)} req/s = ${percent(share)} of capacity${met || smoke ? '' : ` (missed by ${percent(TARGET_SHARE - share)} of capacity)`}; ` +
      `the static default ${integer(staticCell.goodput)} req/s = ${percent(staticCell.goodput / main.capacity)}, with ${percent(staticCell.timeouts, 0)} of its requests timed out. ` +
      `At 1x (e) refused ${percent(cellOf(main, 'adaptive', 1).shed)} of the requests (the database route's target for 1x is at most 1 %), with a limit of ${cellOf(main, 'adaptive', 1).limit ?? '-'} at the end: ` +
      'on this route every admitted request slows the others (no stretch of flat latency below the capacity, as a pool has), so the baseline measured at `minLimit` already includes the other requests in flight then, and the limit settles near the tolerance (1.5x by default) times that concurrency; at a utilisation near 1, bursts above it are refused.',
    '',
    '**What limits it.** A refusal is not free: the request is read, parsed and routed, and the 503 written, on the same event loop that does the work. ' +
      `In (e)'s ${top}x cell the server answered ${integer(adaptive.shed * adaptive.offered)} 503s per second; its CPU beyond what its successes cost at capacity (${fixed(cost.perSuccessMs, 2)} ms each) comes to about ${us(cost.perRefusalMs)} per refusal, ` +
      `${percent(cost.perRefusalMs / cost.perSuccessMs, 0)} of a served request. A core that serves only successes and refusals then keeps at most ${percent(cost.ceiling, 0)} of the capacity in goodput at ${top}x, whatever the limit. ` +
      `With ${fixed(CPU_SLICES * HEAVY_SLICE_MS, 1)} ms of work per request the same refusal weighs ${percent(heavyCost.perRefusalMs / heavyCost.perSuccessMs, 0)} of a served request, and (e) keeps ${percent(heavyAdaptive.goodput / heavy.capacity, 0)} of capacity (${percent(perCpuShare(heavy, heavyAdaptive), 0)} per server CPU). ` +
      (adaptive.serverCpu < main.capacityCpu - 0.03
        ? `The rest of the gap to the capacity is the machine's: the server got ${percent(adaptive.serverCpu, 0)} of a core in that cell, against ${percent(main.capacityCpu, 0)} while the capacity was measured. `
        : '') +
      `The limit itself stays small (${adaptive.limit ?? '-'} at the end of the ${top}x cell), with ${percent(adaptive.timeouts)} of the requests timed out. ` +
      (staticCell.goodput >= 0.5 * main.capacity
        ? `The static default does not collapse here as it does on the database route (${percent(staticCell.goodput / main.capacity, 0)} of capacity at ${top}x, but ${percent(staticCell.timeouts, 0)} of its requests timed out): the requests it cannot serve never reach the app. `
        : `The static default collapses here too (${percent(staticCell.goodput / main.capacity, 0)} of capacity at ${top}x). `) +
      'On this route the excess of an unlimited server waits in the kernel rather than in the app: a diagnostic run of the static default at 4x, counting the handler\'s calls and the kernel\'s `ListenOverflows` (`/proc/net/netstat`), found the server starting only about as many requests as it finished, ' +
      'while the kernel dropped the new connections of the others once the listen queue (Node\'s backlog of 511) was full; the clients waited their whole timeout for a connection, and the server spent no CPU on them. ' +
      'The kernel sheds for free, but slowly: those clients learn it after a second, instead of at once from a 503. ' +
      'Tried: pinning the server to the second core and the generator to the first (as the overhead benchmark does, with `taskset`). In a trial run the pinned server got only 66–82 % of its core, against about 100 % unpinned, because other processes on this shared machine ran there too; so the scenario leaves both unpinned and reports goodput per server CPU, which the machine\'s swings do not move.'
  ].join('\n')
  return {
    markdown,
    headline: `overload CPU-bound route at ${top}x: adaptive limit goodput ${percent(share, 0)} of capacity (static default ${percent(staticCell.goodput / main.capacity, 0)}, with ${percent(staticCell.timeouts, 0)} timeouts)`
  }
}

/** `8 s`, or `1.5 s` when not a whole number of seconds. */
function seconds (ms: number): string {
  return `${fixed(ms / 1000, ms % 1000 === 0 ? 0 : 1)} s`
}
