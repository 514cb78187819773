import type { FastifyPluginAsync } from 'fastify'
import fp from 'fastify-plugin'
import { collectDefaultMetrics, Registry } from 'prom-client'
import type { DefaultMetricsCollectorConfiguration, RegistryContentType } from 'prom-client'
import { bearerTokenGuard } from './lib/plugin/bearer-token.js'
import { provideMetricsRegistry } from './lib/metrics/registry.js'
import { OptionReader, isPlainObject } from './lib/plugin/options.js'
import { registerOnce } from './lib/plugin/register-once.js'
// The `shed` route option's type is declared by the load shedding plugin.
import type {} from './load-shedding.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * The prom-client `Registry` every fastify-resilience plugin of this app
     * writes to. One per app, never prom-client's global default registry.
     */
    metricsRegistry: Registry
  }
}

const PLUGIN = 'fastify-resilience-metrics'
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/

/** Options of the metrics plugin. */
export interface MetricsOptions {
  /**
   * Path of the Prometheus scrape endpoint; `null` registers no route (read
   * `app.metricsRegistry` yourself).
   * @default '/metrics'
   */
  endpoint?: string | null
  /**
   * A prom-client registry to write to instead of a new one. Never defaults to
   * prom-client's global registry, so two apps in one process do not collide.
   */
  registry?: Registry
  /**
   * Prepended to every metric name of every fastify-resilience plugin
   * (e.g. `'players_'` gives `players_circuit_breaker_state`).
   * @default ''
   */
  prefix?: string
  /**
   * Also collect prom-client's default Node.js process metrics (`true`, or
   * prom-client's collector options without `register`).
   * @default false
   */
  defaultMetrics?: boolean | Omit<DefaultMetricsCollectorConfiguration<RegistryContentType>, 'register'>
  /**
   * When set, the endpoint answers 401 unless the request carries
   * `Authorization: Bearer <token>`. Compared in constant time.
   */
  token?: string
}

const KNOWN_OPTIONS = ['endpoint', 'registry', 'prefix', 'defaultMetrics', 'token'] as const

const metricsPlugin: FastifyPluginAsync<MetricsOptions> = async (app, rawOptions) => {
  const read = new OptionReader(PLUGIN)
  const opts = read.object<MetricsOptions>('options', rawOptions, KNOWN_OPTIONS)
  const endpoint = opts.endpoint === null
    ? null
    : read.string('endpoint', opts.endpoint, '/metrics', { pattern: /^\/\S*$/, description: 'a path starting with "/", or null' })
  const prefix = read.string('prefix', opts.prefix, '', { pattern: /^(?:[a-zA-Z_:][a-zA-Z0-9_:]*)?$/, description: 'a Prometheus metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)' })
  if (opts.registry !== undefined && !(opts.registry instanceof Registry)) {
    throw read.fail('registry', 'a prom-client Registry', opts.registry)
  }
  const token = opts.token === undefined
    ? undefined
    : read.string('token', opts.token, '', { pattern: /^\S+$/, description: 'a non-empty string without spaces' })
  const defaultMetrics = opts.defaultMetrics
  if (defaultMetrics !== undefined && typeof defaultMetrics !== 'boolean' && !isPlainObject(defaultMetrics)) {
    throw read.fail('defaultMetrics', 'a boolean or an options object', defaultMetrics)
  }

  registerOnce(app, PLUGIN)
  const registry = provideMetricsRegistry(app, PLUGIN, opts.registry, prefix)

  if (defaultMetrics !== undefined && defaultMetrics !== false) {
    const collectorOptions = defaultMetrics === true ? {} : defaultMetrics
    const collectorPrefix = prefix + (collectorOptions.prefix ?? '')
    if (collectorPrefix !== '' && !METRIC_NAME.test(collectorPrefix)) {
      throw read.fail('defaultMetrics.prefix', 'a Prometheus metric name prefix', collectorOptions.prefix)
    }
    collectDefaultMetrics({ ...collectorOptions, prefix: collectorPrefix, register: registry })
  }

  if (endpoint === null) return

  app.route({
    method: 'GET',
    url: endpoint,
    // A scrape every few seconds must not flood the logs.
    logLevel: 'warn',
    // Metrics must answer during overload.
    config: { resilience: { shed: false } },
    ...(token === undefined ? {} : { onRequest: bearerTokenGuard(token) }),
    handler: async (_request, reply) => {
      reply.type(registry.contentType)
      return registry.metrics()
    }
  })
}

/**
 * Serves the app's Prometheus metrics and decorates `app.metricsRegistry`,
 * the one prom-client `Registry` every fastify-resilience plugin writes to.
 *
 * @example
 * ```ts
 * await app.register(metrics, { endpoint: '/metrics', token: process.env.METRICS_TOKEN })
 * ```
 */
export const metrics = fp(metricsPlugin, { fastify: '5.x', name: PLUGIN })
export default metrics
