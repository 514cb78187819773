import { OptionReader, describeValue } from '../plugin/options.js'

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

/** Every key of `config.resilience`, whichever plugins are registered. */
export const ROUTE_OPTION_KEYS = ['flag', 'shed', 'timeoutMs', 'retry', 'breaker', 'fallback'] as const

/** `config.resilience` objects already checked (each plugin's `onRoute` asks). */
const checked = new WeakSet<object>()

/**
 * The route's `config.resilience` as an object, or undefined when absent or
 * `false`. The one reader of that object: whichever plugin asks first checks
 * its shape and its keys against every option of the suite, so a typo fails
 * at start-up even when the plugin it was meant for is not registered; each
 * plugin then validates the values of its own keys.
 */
export function routeResilience (config: unknown, route: string): Record<string, unknown> | undefined {
  if (typeof config !== 'object' || config === null) return undefined
  const resilience = (config as { resilience?: unknown }).resilience
  if (resilience === undefined || resilience === false) return undefined
  if (typeof resilience !== 'object' || resilience === null || Array.isArray(resilience)) {
    throw new TypeError(`fastify-resilience: route "${route}": "config.resilience" must be an object or false (got ${describeValue(resilience)})`)
  }
  if (!checked.has(resilience)) {
    new OptionReader(`fastify-resilience: route "${route}"`).object('config.resilience', resilience, ROUTE_OPTION_KEYS)
    checked.add(resilience)
  }
  return resilience as Record<string, unknown>
}
