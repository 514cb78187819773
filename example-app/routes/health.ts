import type { FastifyInstance } from 'fastify'
import type { PlayerCache } from '../cache.js'

export interface Lifecycle {
  /** True once shutdown began: readiness turns 503 so load balancers stop sending traffic. */
  draining: boolean
}

export async function healthRoutes (app: FastifyInstance, { cache, lifecycle }: { cache: PlayerCache, lifecycle: Lifecycle }): Promise<void> {
  const never = { resilience: { shed: false as const } }
  app.get('/health/live', { config: never, logLevel: 'warn' }, async () => ({ status: 'ok' }))
  app.get('/health/ready', { config: never, logLevel: 'warn' }, async (_request, reply) => {
    const database = app.breaker('database')
    const ready = !lifecycle.draining && database.state !== 'open'
    reply.code(ready ? 200 : 503)
    return {
      status: ready ? 'ready' : 'unavailable',
      draining: lifecycle.draining,
      cache: cache.status(),
      breakers: app.breaker.list().map((breaker) => breaker.toJSON()),
      flags: app.flags.list()
    }
  })
}
