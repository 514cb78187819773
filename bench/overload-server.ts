/**
 * Server of the overload benchmark (bench/overload.ts), run in a process of its
 * own by `startBenchServer`. `GET /work` runs one PostgreSQL query with a known
 * service time (`SELECT pg_sleep(…)`) on a pool of a known size, so the app's
 * capacity is pool size / service time; `PUT /service-ms` changes that
 * service time while the server runs (the capacity step). `GET /cpu` uses no
 * database: a few slices of busy CPU work, each followed by a turn of the
 * event loop, so that admitted requests interleave and the event loop is the
 * bottleneck. The protection in front of them is chosen by the environment:
 *
 * - `OVERLOAD_MODE`: `none` (no protection), `under-pressure`
 *   (@fastify/under-pressure, its options as JSON in `OVERLOAD_UNDER_PRESSURE`)
 *   `load-shedding` (this library's `loadShedding`, `maxConcurrent` from
 *   `OVERLOAD_MAX_CONCURRENT`), `load-shedding-default` (`loadShedding({ limit: 'static' })`,
 *   the static limit with its default `maxConcurrent`) or `adaptive`
 *   (`loadShedding()`: the adaptive limit, the plugin's default);
 * - `OVERLOAD_DATABASE_URL`, `OVERLOAD_POOL_SIZE`, `OVERLOAD_SERVICE_MS`, and
 *   `OVERLOAD_APPLICATION_NAME` (the connections' `application_name`, so that
 *   the benchmark can wait until they are gone);
 * - `OVERLOAD_CPU_SLICES` and `OVERLOAD_CPU_SLICE_MS`: the work of `GET /cpu`.
 *
 * The route handlers are the same in every mode; the control routes
 * (`/limit`, `/memory`, `/service-ms`) are never shed nor counted.
 */
import { performance } from 'node:perf_hooks'
import { setImmediate as nextTurn } from 'node:timers/promises'
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import underPressure from '@fastify/under-pressure'
import pg from 'pg'
import { loadShedding } from 'fastify-resilience'
import { serveBenchApp } from './lib/server-process.js'

function required (name: string): string {
  const value = process.env[name]
  if (value === undefined || value === '') throw new Error(`${name} is not set`)
  return value
}

function positiveInteger (name: string): number {
  const value = Number(required(name))
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got ${process.env[name]}`)
  return value
}

function positiveNumber (name: string): number {
  const value = Number(required(name))
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, got ${process.env[name]}`)
  return value
}

/** Keeps the CPU busy for `ms`: the work of one slice of `GET /cpu`. */
function spin (ms: number): void {
  const until = performance.now() + ms
  while (performance.now() < until);
}

async function build (): Promise<FastifyInstance> {
  const mode = required('OVERLOAD_MODE')
  const poolSize = positiveInteger('OVERLOAD_POOL_SIZE')
  let serviceSeconds = positiveInteger('OVERLOAD_SERVICE_MS') / 1000
  const cpuSlices = positiveInteger('OVERLOAD_CPU_SLICES')
  const cpuSliceMs = positiveNumber('OVERLOAD_CPU_SLICE_MS')
  const pool = new pg.Pool({ connectionString: required('OVERLOAD_DATABASE_URL'), max: poolSize, application_name: required('OVERLOAD_APPLICATION_NAME') })
  pool.on('error', () => {})
  // Open every connection now, so that no cell pays for connecting.
  await Promise.all(Array.from({ length: poolSize }, async () => await pool.query('SELECT 1')))

  const app = Fastify({ logger: false })
  app.addHook('onClose', async () => {
    // Ends the connections once their current query is over; requests still
    // waiting for a connection are dropped with the process.
    await pool.end()
  })
  if (mode === 'under-pressure') {
    await app.register(underPressure, JSON.parse(required('OVERLOAD_UNDER_PRESSURE')) as Record<string, number>)
  } else if (mode === 'load-shedding') {
    await app.register(loadShedding, { maxConcurrent: positiveInteger('OVERLOAD_MAX_CONCURRENT') })
  } else if (mode === 'load-shedding-default') {
    await app.register(loadShedding, { limit: 'static' })
  } else if (mode === 'adaptive') {
    await app.register(loadShedding)
  } else if (mode !== 'none') {
    throw new Error(`OVERLOAD_MODE must be none, under-pressure, load-shedding, load-shedding-default or adaptive, got ${mode}`)
  }
  app.get('/work', async () => {
    await pool.query({ name: 'overload-work', text: 'SELECT pg_sleep($1)', values: [serviceSeconds] })
    return { ok: true }
  })
  // A handler bound by the CPU, written as real ones are: its work is cut by
  // awaits, so requests admitted together share the event loop and each one's
  // latency grows with how many are in flight. (A fully synchronous handler
  // would finish each request before reading the next: one request in flight
  // as the load shedder counts them, and the queue in the socket buffers,
  // where no concurrency limit can see it.)
  app.get('/cpu', async () => {
    for (let slice = 0; slice < cpuSlices; slice++) {
      spin(cpuSliceMs)
      await nextTurn()
    }
    return { ok: true }
  })

  const control = { config: { resilience: { shed: false as const } } }
  // Memory figures for the benchmark's setup paragraph (under-pressure's RSS and heap thresholds).
  app.get('/memory', control, async () => process.memoryUsage())
  // The live concurrency limit (null without load shedding), to report what the adaptive limit learnt.
  app.get('/limit', control, async () => ({ limit: app.hasDecorator('loadShedding') ? app.loadShedding.limit : null }))
  // The capacity step: the service time of `/work` from now on.
  app.put<{ Body: { ms: number } }>('/service-ms', {
    ...control,
    schema: { body: { type: 'object', required: ['ms'], properties: { ms: { type: 'number', exclusiveMinimum: 0 } } } }
  }, async (request) => {
    serviceSeconds = request.body.ms / 1000
    return { ms: request.body.ms }
  })
  return app
}

await serveBenchApp(build)
