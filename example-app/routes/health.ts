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
    // Ready while the database breaker lets calls through: closed, or
    // half-open, whose trial calls need traffic to close it again. Open or
    // isolated (held open by hand), every call would be refused.
    const { state } = app.breaker('database')
    const ready = !lifecycle.draining && (state === 'closed' || state === 'half-open')
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
