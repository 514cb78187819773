// Type tests: `config.resilience` is checked through FastifyContextConfig.
// Every `@ts-expect-error` below must meet a real type error, or the
// type-check (tap's, and `npm run typecheck`) fails on the unused directive.
import Fastify from 'fastify'
import { test } from 'tap'
import type { RouteResilienceOptions } from '../../plugins/index.js'

function declareRoutes (): void {
  const app = Fastify()
  const handler = async (): Promise<string> => 'ok'

  // Every option, well typed.
  app.get('/ok', {
    config: {
      resilience: {
        flag: 'player_lookup',
        shed: { priority: 'critical' },
        timeoutMs: 2000,
        retry: { maxRetries: 2, jitter: 'full', allowNonIdempotent: false, budget: { ratio: 0.1 } },
        breaker: { name: 'database', failureRatio: 0.5, halfOpenAfterMs: 10_000 },
        fallback: (request, error) => ({ url: request.url, degraded: error !== undefined })
      }
    }
  }, handler)
  app.get('/off', { config: { resilience: false } }, handler)
  app.get('/named', { config: { resilience: { breaker: 'database', shed: false, retry: false } } }, handler)

  // Wrong types of known options are compile errors.
  // @ts-expect-error timeoutMs is a number
  app.get('/t', { config: { resilience: { timeoutMs: '2s' } } }, handler)
  // @ts-expect-error an unknown priority
  app.get('/p', { config: { resilience: { shed: { priority: 'urgent' } } } }, handler)
  // @ts-expect-error jitter takes three values
  app.get('/j', { config: { resilience: { retry: { jitter: 'some' } } } }, handler)
  // @ts-expect-error a breaker object needs a name
  app.get('/b', { config: { resilience: { breaker: { failureRatio: 0.5 } } } }, handler)
  // @ts-expect-error flag is a name
  app.get('/f', { config: { resilience: { flag: true } } }, handler)

  // Fastify infers each route's config type from its literal, so unknown keys
  // pass the route call itself (they fail at ready()); `satisfies` catches them
  // at compile time.
  // @ts-expect-error a misspelt option
  app.get('/typo', { config: { resilience: { timeout: 2000 } satisfies RouteResilienceOptions } }, handler)
  // @ts-expect-error a misspelt retry option
  app.get('/r', { config: { resilience: { retry: { maxRetires: 2 } } satisfies RouteResilienceOptions } }, handler)
  // @ts-expect-error shed is an object or false, not true
  app.get('/s', { config: { resilience: { shed: true } satisfies RouteResilienceOptions } }, handler)
  // @ts-expect-error fallback is a function
  app.get('/fb', { config: { resilience: { fallback: { degraded: true } } satisfies RouteResilienceOptions } }, handler)
}

test('route options are typed (checked by the type-check of this file)', async (t) => {
  const options: RouteResilienceOptions = { timeoutMs: 1, retry: false }
  t.same(Object.keys(options), ['timeoutMs', 'retry'])
  t.type(declareRoutes, 'function')
})
