/**
 * Server of the overhead benchmark, one process per setup (BENCH_SETUP):
 * - `bare`: Fastify and one JSON route;
 * - `suite`: the same route with the whole suite on, as a user would write it:
 *   load shedding, a feature flag, breaker, retry, a per-attempt timeout, and
 *   the metrics plugin with its endpoint.
 * Started by bench/overhead.ts through bench/lib/server-process.ts.
 */
import Fastify from 'fastify'
import resilience from 'fastify-resilience'
import type { RouteResilienceOptions } from 'fastify-resilience'
import { serveBenchApp } from './lib/server-process.js'

const setup = process.env.BENCH_SETUP

await serveBenchApp(async () => {
  const app = Fastify({ logger: false })
  if (setup === 'suite') {
    await app.register(resilience, {
      metrics: { endpoint: '/metrics' },
      loadShedding: { maxConcurrent: 1000 },
      flags: { defaults: { player_lookup: true } },
      fallback: false
    })
    const resilienceOptions = { flag: 'player_lookup', timeoutMs: 2000, retry: { maxRetries: 2 }, breaker: 'database' } satisfies RouteResilienceOptions
    app.get('/json', { config: { resilience: resilienceOptions } }, async () => ({ hello: 'world' }))
  } else if (setup === 'bare') {
    app.get('/json', async () => ({ hello: 'world' }))
  } else {
    throw new Error(`BENCH_SETUP must be "bare" or "suite" (got ${String(setup)})`)
  }
  return app
})
