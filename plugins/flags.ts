import type { FastifyInstance, FastifyPluginAsync, onRequestHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import type { RedisClient } from './lib/redis/redis-client.js'
import { appRedisOf, redisClientOption } from './lib/redis/redis-option.js'
import { FeatureDisabledError } from './errors.js'
import { FeatureFlags, checkFlagName, checkFlagValue, enabledShare } from './lib/flags/feature-flags.js'
import type { FlagValue } from './lib/flags/feature-flags.js'
import { registerFlagAdmin } from './lib/flags/flag-admin.js'
import { collectedGauge, useMetricsRegistry } from './lib/metrics/registry.js'
import { OptionReader, isPlainObject } from './lib/plugin/options.js'
import { RedisFlagStore } from './lib/flags/redis-flag-store.js'
import { registerOnce } from './lib/plugin/register-once.js'
import { routeLabel, routeResilience } from './lib/route/route-config.js'

export { FeatureFlags } from './lib/flags/feature-flags.js'
export type { FlagValue, FlagChangeListener } from './lib/flags/feature-flags.js'
export type { RedisClient } from './lib/redis/redis-client.js'

const PLUGIN = 'fastify-resilience-flags'

/** The shared Redis store of the flags plugin. */
export interface FlagsRedisOptions {
  /** An ioredis client; by default the app's `app.redis` from @fastify/redis. */
  client?: RedisClient
  /**
   * Hash holding the values.
   * @default 'fastify-resilience:flags'
   */
  key?: string
  /**
   * Channel the changes are published on.
   * @default 'fastify-resilience:flags'
   */
  channel?: string
  /**
   * Longest wait for Redis when saving or loading, in milliseconds.
   * @default 2000
   */
  commandTimeoutMs?: number
}

/** Options of the flags plugin. */
export interface FlagsPluginOptions {
  /** Initial values, e.g. `{ player_lookup: true, recommendations: { percentage: 25 } }`. */
  defaults?: Record<string, FlagValue>
  /**
   * Whether a flag that has no value is enabled: by default an unknown flag
   * does not switch anything off.
   * @default true
   */
  defaultEnabled?: boolean
  /**
   * Share the flags between instances through Redis: `true` uses `app.redis`.
   * @default undefined (memory only, this instance)
   */
  redis?: true | FlagsRedisOptions
  /** The admin HTTP API; its routes exist only when `token` is set. */
  admin?: {
    /** Bearer token the admin routes require (compared in constant time). */
    token: string
    /**
     * Path prefix of the admin routes.
     * @default '/admin'
     */
    prefix?: string
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Feature flags (fastify-resilience-flags). */
    flags: FeatureFlags
  }
}

declare module './lib/route/route-config.js' {
  interface RouteResilienceOptions {
    /** A disabled flag answers 503 `FST_RESILIENCE_FEATURE_DISABLED` before the handler runs. */
    flag?: string
  }
}

const DEFAULT_CHANNEL = 'fastify-resilience:flags'

function resolveRedis (read: OptionReader, raw: unknown, appRedis: () => RedisClient | undefined): Required<FlagsRedisOptions> | undefined {
  if (raw === undefined) return undefined
  const opts = raw === true ? {} : read.object<FlagsRedisOptions>('redis', raw, ['client', 'key', 'channel', 'commandTimeoutMs'])
  const client = redisClientOption(read, 'redis.client', opts.client, appRedis, 'flags')
  return {
    client,
    key: read.string('redis.key', opts.key, DEFAULT_CHANNEL, { pattern: /^\S+$/, description: 'a non-empty Redis key' }),
    channel: read.string('redis.channel', opts.channel, DEFAULT_CHANNEL, { pattern: /^\S+$/, description: 'a non-empty channel name' }),
    commandTimeoutMs: read.number('redis.commandTimeoutMs', opts.commandTimeoutMs, 2000, { min: 1 })
  }
}

/** The initial values of the `defaults` option, each name and value checked. */
function resolveDefaults (read: OptionReader, raw: unknown): Record<string, FlagValue> {
  if (raw !== undefined && !isPlainObject(raw)) throw read.fail('defaults', 'an object of flag values', raw)
  const defaults: Record<string, FlagValue> = {}
  for (const [name, value] of Object.entries(raw ?? {})) {
    checkFlagName(read, 'defaults', name)
    defaults[name] = checkFlagValue(read, `defaults.${name}`, value)
  }
  return defaults
}

/** The admin API's token and prefix, or undefined without a token (no admin routes). */
function resolveAdmin (read: OptionReader, raw: unknown): { token: string, prefix: string } | undefined {
  if (raw === undefined) return undefined
  const admin = read.object<NonNullable<FlagsPluginOptions['admin']>>('admin', raw, ['token', 'prefix'])
  return {
    token: read.string('admin.token', admin.token, '', { pattern: /^\S{16,}$/, description: 'a token of at least 16 characters without spaces' }),
    prefix: read.string('admin.prefix', admin.prefix, '/admin', { pattern: /^(\/[\w.~-]+)+$/, description: 'a path prefix such as "/admin"' })
  }
}

/** Gives each route with `config.resilience.flag` an onRequest hook that refuses it while its flag is off. */
function checkRouteFlags (app: FastifyInstance, flags: FeatureFlags): void {
  app.addHook('onRoute', (route) => {
    const label = routeLabel(route)
    const flag = routeResilience(route.config, label)?.flag
    if (flag === undefined) return
    const name = checkFlagName(new OptionReader(`${PLUGIN}: route "${label}"`), 'config.resilience.flag', flag)
    const checkFlag: onRequestHookHandler = (_request, _reply, done) => {
      if (flags.isEnabled(name)) done()
      else done(new FeatureDisabledError(name))
    }
    const existing = route.onRequest
    route.onRequest = existing === undefined ? [checkFlag] : [...(Array.isArray(existing) ? existing : [existing]), checkFlag]
  })
}

const flagsPlugin: FastifyPluginAsync<FlagsPluginOptions> = async (app, rawOptions) => {
  const read = new OptionReader(PLUGIN)
  const opts = read.object<FlagsPluginOptions>('options', rawOptions, ['defaults', 'defaultEnabled', 'redis', 'admin'])
  const defaults = resolveDefaults(read, opts.defaults)
  const defaultEnabled = read.boolean('defaultEnabled', opts.defaultEnabled, true)
  const admin = resolveAdmin(read, opts.admin)
  const redis = resolveRedis(read, opts.redis, appRedisOf(app))
  registerOnce(app, PLUGIN)

  const flags = new FeatureFlags(read, defaultEnabled, defaults, (error) => app.log.error({ err: error }, 'feature flags: a change listener failed'))
  app.decorate('flags', flags)
  const stopCollecting = collectedGauge(useMetricsRegistry(app), 'feature_flag_enabled', {
    help: 'Share of traffic each feature flag enables: 1 on, 0 off, between for a percentage rollout.',
    labelNames: ['flag']
  }, (gauge) => {
    for (const [name, value] of Object.entries(flags.list())) gauge.set({ flag: name }, enabledShare(value))
  })
  const store = redis === undefined ? undefined : new RedisFlagStore(redis, flags, app.log)
  if (store !== undefined) {
    flags.useStore(store)
    await store.start()
  }
  checkRouteFlags(app, flags)
  if (admin !== undefined) registerFlagAdmin(app, flags, admin.token, admin.prefix)
  app.addHook('onClose', async () => {
    stopCollecting()
    store?.close()
  })
}

/**
 * Feature flags for graceful degradation: `app.flags.isEnabled(name)` on the
 * hot path, `await app.flags.set(name, value)` to change one, shared by every
 * instance through Redis when `redis` is set, and `config.resilience.flag` to
 * switch a route off (503 `FST_RESILIENCE_FEATURE_DISABLED`).
 *
 * @example
 * ```ts
 * await app.register(fastifyRedis, { url: process.env.REDIS_URL })
 * await app.register(flags, { defaults: { player_lookup: true }, redis: true, admin: { token: process.env.ADMIN_TOKEN! } })
 * app.get('/players/:id', { config: { resilience: { flag: 'player_lookup' } } }, handler)
 * ```
 */
export const flags = fp(flagsPlugin, { fastify: '5.x', name: PLUGIN })
export default flags
