import type { FastifyPluginAsync } from 'fastify'
import fp from 'fastify-plugin'
import { breaker } from './breaker.js'
import type { BreakerPluginOptions } from './breaker.js'
import { fallback } from './fallback.js'
import type { FallbackPluginOptions } from './fallback.js'
import { flags } from './flags.js'
import type { FlagsPluginOptions } from './flags.js'
import { loadShedding } from './load-shedding.js'
import type { LoadSheddingOptions } from './load-shedding.js'
import { OptionReader } from './lib/plugin/options.js'
import { metrics } from './metrics.js'
import type { MetricsOptions } from './metrics.js'
import { retry } from './retry.js'
import type { RetryPluginOptions } from './retry.js'
import { routePolicy } from './route-policy.js'

/** Options of the umbrella plugin: each part's options, or `false` to leave it out. */
export interface ResilienceOptions {
  metrics?: MetricsOptions | false
  loadShedding?: LoadSheddingOptions | false
  flags?: FlagsPluginOptions | false
  breaker?: BreakerPluginOptions | false
  retry?: RetryPluginOptions | false
  fallback?: FallbackPluginOptions | false
}

const PARTS = ['metrics', 'loadShedding', 'flags', 'breaker', 'retry', 'fallback'] as const

const resiliencePlugin: FastifyPluginAsync<ResilienceOptions> = async (app, rawOptions) => {
  const read = new OptionReader('fastify-resilience')
  const opts = read.object<ResilienceOptions>('options', rawOptions, PARTS)
  // Metrics first (its registry and prefix serve the others), load shedding
  // next (its onRequest hook must run first), the route pipeline last.
  if (opts.metrics !== false) await app.register(metrics, opts.metrics ?? {})
  if (opts.loadShedding !== false) await app.register(loadShedding, opts.loadShedding ?? {})
  if (opts.flags !== false) await app.register(flags, opts.flags ?? {})
  if (opts.breaker !== false) await app.register(breaker, opts.breaker ?? {})
  if (opts.retry !== false) await app.register(retry, opts.retry ?? {})
  if (opts.fallback !== false) await app.register(fallback, opts.fallback ?? {})
  await app.register(routePolicy)
}

/**
 * Every part of fastify-resilience in one registration, in the right order:
 * metrics, load shedding, flags, breaker, retry, fallback, and the per-route
 * pipeline that reads `config.resilience`. Any part can be `false`.
 *
 * @example
 * ```ts
 * await app.register(resilience, {
 *   loadShedding: { maxConcurrent: 1000 },
 *   flags: { defaults: { player_lookup: true } },
 *   retry: { maxRetries: 2 },
 * })
 * ```
 */
export const resilience = fp(resiliencePlugin, { fastify: '5.x', name: 'fastify-resilience' })
export default resilience
