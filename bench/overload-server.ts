/**
 * Server of the overload benchmark (bench/overload.ts), run in a process of its
 * own by `startBenchServer`. `GET /work` runs one PostgreSQL query with a known
 * service time (`SELECT pg_sleep(…)`) on a pool of a known size, so the app's
 * capacity is pool size / service time. The protection in front of it is
 * chosen by the environment:
 *
 * - `OVERLOAD_MODE`: `none` (no protection), `under-pressure`
 *   (@fastify/under-pressure, its options as JSON in `OVERLOAD_UNDER_PRESSURE`)
 *   `load-shedding` (this library's `loadShedding`, `maxConcurrent` from
 *   `OVERLOAD_MAX_CONCURRENT`), `load-shedding-default` (`loadShedding()`
 *   with its defaults) or `adaptive` (`loadShedding({ limit: 'adaptive' })`);
 * - `OVERLOAD_DATABASE_URL`, `OVERLOAD_POOL_SIZE`, `OVERLOAD_SERVICE_MS`, and
 *   `OVERLOAD_APPLICATION_NAME` (the connections' `application_name`, so that
 *   the benchmark can wait until they are gone).
 *
 * The route handler is the same in every mode.
 */
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

async function build (): Promise<FastifyInstance> {
  const mode = required('OVERLOAD_MODE')
  const poolSize = positiveInteger('OVERLOAD_POOL_SIZE')
  const serviceSeconds = positiveInteger('OVERLOAD_SERVICE_MS') / 1000
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
    await app.register(loadShedding)
  } else if (mode === 'adaptive') {
    await app.register(loadShedding, { limit: 'adaptive' })
  } else if (mode !== 'none') {
    throw new Error(`OVERLOAD_MODE must be none, under-pressure, load-shedding, load-shedding-default or adaptive, got ${mode}`)
  }
  const query = { name: 'overload-work', text: 'SELECT pg_sleep($1)', values: [serviceSeconds] }
  app.get('/work', async () => {
    await pool.query(query)
    return { ok: true }
  })
  // Memory figures for the benchmark's setup paragraph (under-pressure's RSS and heap thresholds).
  app.get('/memory', async () => process.memoryUsage())
  // The live concurrency limit (null without load shedding), to report what the adaptive limit learnt.
  app.get('/limit', async () => ({ limit: app.hasDecorator('loadShedding') ? app.loadShedding.limit : null }))
  return app
}

await serveBenchApp(build)
