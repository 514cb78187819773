// Micro-benchmark of the per-attempt timeout (issue 8 "Cost"): the route
// pipeline's Promise.race + one timer against cockatiel's timeout(), around a
// handler that resolves at once. Interleaved rounds, median ns per call.
// Run: npx tsx bench/route-pipeline.ts
import Fastify from 'fastify'
import { TimeoutStrategy, timeout } from 'cockatiel'
import { resilience } from '../plugins/index.js'

const CALLS = 20_000
const ROUNDS = 7

async function nsPerCall (run: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint()
  for (let i = 0; i < CALLS; i++) await run()
  return Number(process.hrtime.bigint() - start) / CALLS
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number

const app = Fastify()
await app.register(resilience, { metrics: false, loadShedding: false, flags: false, fallback: false })
app.get('/bare', async () => 'ok')
app.get('/timeout', { config: { resilience: { timeoutMs: 2000 } } }, async () => 'ok')
app.get('/pipeline', { config: { resilience: { timeoutMs: 2000, breaker: 'db', retry: { maxRetries: 2 } } } }, async () => 'ok')
await app.ready()

const cockatielTimeout = timeout(2000, { strategy: TimeoutStrategy.Aggressive, abortOnReturn: true })
const candidates: Record<string, () => Promise<unknown>> = {
  'fastify inject, bare route': async () => await app.inject('/bare'),
  'fastify inject, timeoutMs route': async () => await app.inject('/timeout'),
  'fastify inject, timeoutMs + breaker + retry route': async () => await app.inject('/pipeline'),
  'cockatiel timeout() around a resolved fn': async () => await cockatielTimeout.execute(async () => 'ok'),
  'bare resolved fn': async () => await (async () => 'ok')()
}
const results: Record<string, number[]> = Object.fromEntries(Object.keys(candidates).map((name) => [name, []]))
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, run] of Object.entries(candidates)) results[name]?.push(await nsPerCall(run))
}
for (const [name, values] of Object.entries(results)) {
  console.log(`${name.padEnd(52)} ${(median(values) / 1000).toFixed(2)} µs/call (min ${(Math.min(...values) / 1000).toFixed(2)}, max ${(Math.max(...values) / 1000).toFixed(2)})`)
}
await app.close()
