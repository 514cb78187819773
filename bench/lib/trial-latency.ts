import Fastify from 'fastify'
import { Cluster, Redis } from 'ioredis'
import { breaker } from 'fastify-resilience'
import { quantile } from './stats.js'

/** Where the fleet's breakers are kept for the measurement. */
export type TrialBackend = { kind: 'redis', url: string } | { kind: 'cluster', nodes: Array<{ host: string, port: number }> }

export interface TrialLatency {
  samples: number
  p50Ms: number
  p99Ms: number
}

/**
 * Time per call of a fleet-wide breaker held half-open (a huge
 * `halfOpenMaxCalls`): each call waits for Redis to grant its trial (one
 * script call by SHA); the result is settled in the background. One
 * instance, so its own failures trip the fleet.
 */
export async function trialLatency (backend: TrialBackend, samples: number): Promise<TrialLatency> {
  const client = backend.kind === 'redis' ? new Redis(backend.url) : new Cluster(backend.nodes)
  const app = Fastify()
  const names = { prefix: `bench-trial-${process.pid}-${backend.kind}:`, channel: `bench-trial-${process.pid}` }
  try {
    await app.register(breaker, { shared: { redis: { client, ...names }, timeoutMs: 1000 } })
    await app.ready()
    const db = app.breaker('db', { halfOpenAfterMs: 50, halfOpenMaxCalls: 1_000_000 })
    const until = async (what: string, check: () => boolean): Promise<void> => {
      for (let tries = 0; !check(); tries++) {
        if (tries === 500) throw new Error(`trial latency: ${what} did not happen`)
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    }
    await until('the first read', () => db.toJSON().shared === 'synced' && db.toJSON().fleetInstances === 1)
    for (let i = 0; i < 3; i++) await db.execute(async () => { throw new Error('down') }).catch(() => {})
    await until('half-open', () => db.state === 'half-open')
    const latencies: number[] = []
    for (let i = 0; i < samples; i++) {
      const started = performance.now()
      await db.execute(async () => 'ok')
      latencies.push(performance.now() - started)
    }
    if (db.toJSON().shared !== 'synced') throw new Error('trial latency: Redis was lost during the measurement')
    return { samples, p50Ms: quantile(latencies, 0.5), p99Ms: quantile(latencies, 0.99) }
  } finally {
    await app.close()
    client.disconnect()
  }
}
