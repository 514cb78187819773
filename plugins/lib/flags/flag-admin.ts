import type { FastifyInstance } from 'fastify'
import { bearerTokenGuard } from '../plugin/bearer-token.js'
import type { FeatureFlags, FlagValue } from './feature-flags.js'
import { FLAG_NAME } from './feature-flags.js'

/**
 * Exactly one of `enabled` or `percentage`. Written without `oneOf` because
 * Fastify's Ajv removes unknown properties (removeAdditional), which would let
 * `{ "percentage": 10, "enabled": true }` slip through a `oneOf`.
 */
const bodySchema = {
  type: 'object',
  properties: {
    enabled: { type: 'boolean' },
    percentage: { type: 'number', minimum: 0, maximum: 100 }
  },
  additionalProperties: false,
  anyOf: [{ required: ['enabled'] }, { required: ['percentage'] }],
  maxProperties: 1
} as const

/**
 * The flag admin API, behind a bearer token: `GET <prefix>/flags` lists the
 * values, `PUT <prefix>/flags/:name` changes one (`{ "enabled": bool }` or
 * `{ "percentage": 0-100 }`). Every change is logged as an audit line on the
 * request logger (so it carries the request id).
 */
export function registerFlagAdmin (app: FastifyInstance, flags: FeatureFlags, token: string, prefix: string): void {
  const guard = bearerTokenGuard(token)
  // Operators must be able to switch features off during an overload.
  const config = { resilience: { shed: { priority: 'critical' as const } } }
  app.get(`${prefix}/flags`, { onRequest: guard, config }, async () => ({ defaultEnabled: flags.defaultEnabled, flags: flags.list() }))
  app.put<{ Params: { name: string }, Body: { enabled?: boolean, percentage?: number } }>(`${prefix}/flags/:name`, {
    onRequest: guard,
    config,
    schema: {
      params: { type: 'object', properties: { name: { type: 'string', pattern: FLAG_NAME.source } }, required: ['name'] },
      body: bodySchema
    }
  }, async (request) => {
    const { name } = request.params
    const body = request.body
    const value: FlagValue = body.enabled ?? { percentage: body.percentage as number }
    const previous = flags.get(name)
    await flags.set(name, value)
    request.log.info({ flag: name, previous: previous ?? null, value }, `feature flag "${name}" changed`)
    return { name, value }
  })
}
