/**
 * What the overload benchmark's scenarios share: the protections in front of
 * the server (bench/overload-server.ts), and one cell, an open-loop run
 * against one server at one rate, summarised.
 */
import { performance } from 'node:perf_hooks'
import { openLoop } from './open-loop.js'
import type { OpenLoopResult } from './open-loop.js'
import type { BenchServer } from './server-process.js'
import { quantile } from './stats.js'

/** The protection in front of the routes: `OVERLOAD_MODE` of bench/overload-server.ts. */
export type Mode = 'none' | 'under-pressure' | 'load-shedding' | 'load-shedding-default' | 'adaptive'

/** Labels of the two defaults of load shedding, the rows the scenarios compare. */
export const STATIC_DEFAULT_LABEL = '(d) load shedding, static default'
export const ADAPTIVE_DEFAULT_LABEL = '(e) load shedding, adaptive (the default)'

/** What a scenario may change in the server besides its protection. */
export interface ServerSettings {
  /** Length of one slice of CPU work of `GET /cpu` (ms). */
  cpuSliceMs?: number
}

/** Starts a fresh server with `mode` in front of its routes (the previous one stopped and its connections gone). */
export type ServerFor = (mode: Mode, settings?: ServerSettings) => Promise<BenchServer>

/** One run of the open-loop generator against one server, summarised. */
export interface Cell {
  offered: number
  goodput: number
  p50: number
  p99: number
  shed: number
  timeouts: number
  errors: number
  /** Server CPU during the run, share of one core. */
  serverCpu: number
  /** Generator CPU during the run, share of one core. */
  generatorCpu: number
  sendLagP99Ms: number
  /** The server's concurrency limit at the end of the run (null without load shedding). */
  limit: number | null
}

function summarise (result: OpenLoopResult, serverCpuMs: number, elapsedMs: number, limit: number | null): Cell {
  const seconds = result.durationMs / 1000
  const share = (count: number): number => result.sent === 0 ? Number.NaN : count / result.sent
  return {
    offered: result.sent / seconds,
    goodput: result.counts.success / seconds,
    p50: quantile(result.successLatenciesMs, 0.5),
    p99: quantile(result.successLatenciesMs, 0.99),
    shed: share(result.counts.shed),
    timeouts: share(result.counts.timeout),
    errors: share(result.counts.status + result.counts.error),
    serverCpu: serverCpuMs / elapsedMs,
    generatorCpu: result.cpuMs / elapsedMs,
    sendLagP99Ms: result.sendLagP99Ms,
    limit
  }
}

/** The server's live concurrency limit, or null (no load shedding, or refused by under-pressure). */
export async function liveLimit (server: BenchServer, signal?: AbortSignal): Promise<number | null> {
  const { limit } = await (await fetch(`${server.url}/limit`, { signal })).json() as { limit?: unknown }
  return typeof limit === 'number' ? limit : null
}

/** Options of {@link drive}. */
export interface DriveOptions {
  /** Path of the GET, e.g. `/work`. */
  path: string
  rate: number
  warmupMs: number
  durationMs: number
  timeoutMs: number
}

/** Drives `server` with the open-loop generator and summarises the counted part, with the server's CPU and its limit at the end. */
export async function drive (server: BenchServer, options: DriveOptions): Promise<Cell> {
  const cpuBefore = await server.cpu()
  const started = performance.now()
  const result = await openLoop({ url: `${server.url}${options.path}`, rate: options.rate, warmupMs: options.warmupMs, durationMs: options.durationMs, timeoutMs: options.timeoutMs })
  const elapsedMs = performance.now() - started
  return summarise(result, (await server.cpu() - cpuBefore) / 1000, elapsedMs, await liveLimit(server))
}
