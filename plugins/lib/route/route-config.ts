import { describeValue } from '../shared/options.js'

/**
 * The per-route options every fastify-resilience plugin reads from
 * `config.resilience`. Each plugin adds its own fields to this interface
 * (`declare module` next to its code); `false` switches them all off for a route.
 */
export interface RouteResilienceOptions {}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** fastify-resilience options of this route, or `false` for none. */
    resilience?: RouteResilienceOptions | false
  }
}

/** How errors name a route: `GET /players/:id`. */
export function routeLabel (route: { method: string | string[], url: string }): string {
  return `${Array.isArray(route.method) ? route.method.join(',') : route.method} ${route.url}`
}

/** The route's `config.resilience` as an object, or undefined when absent or `false`. */
export function routeResilience (config: unknown, route: string): Record<string, unknown> | undefined {
  if (typeof config !== 'object' || config === null) return undefined
  const resilience = (config as { resilience?: unknown }).resilience
  if (resilience === undefined || resilience === false) return undefined
  if (typeof resilience !== 'object' || resilience === null || Array.isArray(resilience)) {
    throw new TypeError(`fastify-resilience: route "${route}": "config.resilience" must be an object or false (got ${describeValue(resilience)})`)
  }
  return resilience as Record<string, unknown>
}
