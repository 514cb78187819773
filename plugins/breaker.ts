import type { FastifyBaseLogger, FastifyInstance, FastifyPluginAsync } from 'fastify'
import fp from 'fastify-plugin'
import type { IBackoffFactory, IHalfOpenAfterBackoffContext } from 'cockatiel'
import { Breaker } from './lib/breaker/breaker.js'
import type { FleetJoin } from './lib/breaker/breaker.js'
import { FleetStore } from './lib/breaker/fleet-store.js'
import { isServerFailure } from './lib/failure/failure.js'
import type { BreakerObserver, FailurePredicate, ResolvedBreakerOptions } from './lib/breaker/breaker.js'
import { BreakerMetrics } from './lib/breaker/breaker-metrics.js'
import { useMetricsRegistry } from './lib/metrics/registry.js'
import { OptionReader } from './lib/plugin/options.js'
import { registerOnce } from './lib/plugin/register-once.js'
import type { RedisClient } from './lib/redis/redis-client.js'
import { appRedisOf, redisClientOption } from './lib/redis/redis-option.js'

export { Breaker } from './lib/breaker/breaker.js'
export { isCausedByRequest, isServerFailure } from './lib/failure/failure.js'
export type { BreakerSnapshot, BreakerState, CallResult } from './lib/breaker/breaker.js'
export type { CallContext } from './lib/time/timeout.js'
export type { RedisClient } from './lib/redis/redis-client.js'

const PLUGIN = 'fastify-resilience-breaker'

/**
 * Settings of one circuit breaker. The defaults open a breaker when at least
 * 60 % of at least 3 calls in 10 s failed, and try again after 30 s with at
 * most 3 trial calls (gobreaker's rules).
 */
export interface BreakerOptions {
  /**
   * Share of failed calls in the window that opens the circuit (0 < ratio <= 1).
   * @default 0.6
   */
  failureRatio?: number
  /**
   * Calls the window must hold before the ratio is judged. Calls are counted
   * when admitted, so calls still in flight are part of the ratio.
   * @default 3
   */
  minimumCalls?: number
  /**
   * Length of the counting window; counts start afresh with the first call
   * after a window has passed (gobreaker's `Interval`), and results of calls
   * admitted in an earlier window are ignored.
   * @default 10000
   */
  windowMs?: number
  /**
   * How long the circuit stays open before trial calls go through: a number of
   * milliseconds, or a cockatiel backoff (e.g. `new ExponentialBackoff(...)`)
   * for a delay that grows each time the circuit re-opens.
   * @default 30000
   */
  halfOpenAfterMs?: number | IBackoffFactory<IHalfOpenAfterBackoffContext>
  /**
   * Trial calls let through while half-open; further calls are refused at
   * once. This many succeeding closes the circuit; one failing re-opens it;
   * a neutral one frees its slot for another trial.
   * @default 3
   */
  halfOpenMaxCalls?: number
  /**
   * Cut each call after this many milliseconds: it rejects with
   * `FST_RESILIENCE_TIMEOUT`, counts as a failure, and its `signal` aborts.
   * @default undefined (no timeout)
   */
  timeoutMs?: number
  /**
   * Whether an error counts as a failure of the dependency. An error that does
   * not count is neutral: it neither opens the circuit nor closes it, and in
   * half-open it frees its trial slot. A predicate that throws counts the error.
   * @default `isServerFailure`: every error counts except those the request
   * caused: a `statusCode` (or `status`) from 400 to 499 other than 408 and
   * 429, or a PostgreSQL SQLSTATE of class 22, 23 or 42
   */
  isFailure?: FailurePredicate
  /**
   * Whether this breaker is fleet-wide, when the plugin has `shared` set:
   * `false` keeps it to this instance.
   * @default true with the plugin's `shared` option, else false
   */
  shared?: boolean
}

/** Where the fleet's breakers are kept in Redis. */
export interface SharedBreakerRedisOptions {
  /** An ioredis client; by default the app's `app.redis` from @fastify/redis. */
  client?: RedisClient
  /**
   * Prefix of each breaker's keys (`<prefix>{<name>}` and two more with the same hash tag).
   * @default 'fastify-resilience:breaker:'
   */
  prefix?: string
  /**
   * Channel the state changes are published on.
   * @default 'fastify-resilience:breakers'
   */
  channel?: string
}

/** Breakers shared by every instance of a service through Redis. */
export interface SharedBreakerOptions {
  /** `true` uses `app.redis` (@fastify/redis, registered first) with the default keys. */
  redis: true | SharedBreakerRedisOptions
  /**
   * Instances whose failures it takes to open the fleet's breaker (1 when only
   * one instance reported calls in the window), so that one instance with a
   * broken network path opens only its own breaker.
   * @default 2
   */
  quorum?: number
  /**
   * Longest wait for Redis when a half-open fleet grants a trial call; on
   * timeout the call is left to this instance's breaker.
   * @default 50
   */
  timeoutMs?: number
}

/** Options of the breaker plugin. */
export interface BreakerPluginOptions {
  /** Defaults for every breaker of this app, merged under each breaker's own options. */
  defaults?: BreakerOptions
  /**
   * Makes every breaker of the app fleet-wide: one state per breaker name for
   * every instance, kept in Redis; no Redis round trip on the closed path;
   * each instance falls back to its own breaker while Redis is unreachable.
   * @default undefined (each instance's breakers are its own)
   * @example
   * ```ts
   * await app.register(fastifyRedis, { url: process.env.REDIS_URL })
   * await app.register(breaker, { shared: { redis: true } })
   * ```
   */
  shared?: SharedBreakerOptions
}

/** `app.breaker`: get-or-create a named breaker; `app.breaker.list()` returns them all. */
export interface BreakerAccessor {
  /**
   * The breaker called `name`, created on first use with `options` over the
   * plugin defaults. Asking again returns the same breaker; asking with
   * options that differ from the existing breaker's throws.
   */
  (name: string, options?: BreakerOptions): Breaker
  /** Every breaker of this app, in creation order. */
  list: () => Breaker[]
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Named circuit breakers (fastify-resilience-breaker). */
    breaker: BreakerAccessor
  }
}

const BREAKER_OPTION_KEYS = ['failureRatio', 'minimumCalls', 'windowMs', 'halfOpenAfterMs', 'halfOpenMaxCalls', 'timeoutMs', 'isFailure', 'shared'] as const

const DEFAULTS: ResolvedBreakerOptions = {
  failureRatio: 0.6,
  minimumCalls: 3,
  windowMs: 10_000,
  halfOpenAfterMs: 30_000,
  halfOpenMaxCalls: 3,
  timeoutMs: undefined,
  isFailure: isServerFailure,
  shared: false
}

function isBackoffFactory (value: unknown): value is IBackoffFactory<IHalfOpenAfterBackoffContext> {
  return typeof value === 'object' && value !== null && typeof (value as { next?: unknown }).next === 'function'
}

/**
 * Validates breaker options (`option` names where they came from, e.g.
 * `defaults` or `breaker("database")`) and resolves them over `base`.
 */
function resolveBreakerOptions (read: OptionReader, option: string, raw: unknown, base: ResolvedBreakerOptions = DEFAULTS): ResolvedBreakerOptions {
  const opts = read.object<BreakerOptions>(option, raw, BREAKER_OPTION_KEYS)
  const at = (key: string): string => `${option}.${key}`
  const halfOpenAfter = opts.halfOpenAfterMs
  if (halfOpenAfter !== undefined && !isBackoffFactory(halfOpenAfter) && !(typeof halfOpenAfter === 'number' && Number.isFinite(halfOpenAfter) && halfOpenAfter > 0)) {
    throw read.fail(at('halfOpenAfterMs'), 'a positive number of milliseconds or a cockatiel backoff', halfOpenAfter)
  }
  const failureRatio = read.number(at('failureRatio'), opts.failureRatio, base.failureRatio, { min: 0, max: 1 })
  if (failureRatio === 0) throw read.fail(at('failureRatio'), 'a number above 0 and at most 1', failureRatio)
  return {
    failureRatio,
    minimumCalls: read.number(at('minimumCalls'), opts.minimumCalls, base.minimumCalls, { min: 1, integer: true }),
    windowMs: read.number(at('windowMs'), opts.windowMs, base.windowMs, { min: 1 }),
    halfOpenAfterMs: halfOpenAfter ?? base.halfOpenAfterMs,
    halfOpenMaxCalls: read.number(at('halfOpenMaxCalls'), opts.halfOpenMaxCalls, base.halfOpenMaxCalls, { min: 1, integer: true }),
    timeoutMs: opts.timeoutMs === undefined ? base.timeoutMs : read.number(at('timeoutMs'), opts.timeoutMs, 0, { min: 1 }),
    isFailure: read.function(at('isFailure'), opts.isFailure, base.isFailure),
    shared: read.boolean(at('shared'), opts.shared, base.shared)
  }
}

function resolveShared (read: OptionReader, raw: unknown, appRedis: () => RedisClient | undefined): ConstructorParameters<typeof FleetStore>[0] | undefined {
  if (raw === undefined) return undefined
  const opts = read.object<SharedBreakerOptions>('shared', raw, ['redis', 'quorum', 'timeoutMs'])
  if (opts.redis !== true && typeof opts.redis !== 'object') throw read.fail('shared.redis', 'true or { client, prefix, channel }', opts.redis)
  const redis = opts.redis === true ? {} : read.object<SharedBreakerRedisOptions>('shared.redis', opts.redis, ['client', 'prefix', 'channel'])
  return {
    client: redisClientOption(read, 'shared.redis.client', redis.client, appRedis, 'breaker'),
    prefix: read.string('shared.redis.prefix', redis.prefix, 'fastify-resilience:breaker:', { pattern: /^\S*$/, description: 'a Redis key prefix without spaces' }),
    channel: read.string('shared.redis.channel', redis.channel, 'fastify-resilience:breakers', { pattern: /^\S+$/, description: 'a non-empty channel name' }),
    quorum: read.number('shared.quorum', opts.quorum, 2, { min: 1, integer: true }),
    timeoutMs: read.number('shared.timeoutMs', opts.timeoutMs, 50, { min: 1 })
  }
}

function firstDifference (a: ResolvedBreakerOptions, b: ResolvedBreakerOptions): string | undefined {
  return BREAKER_OPTION_KEYS.find((key) => a[key] !== b[key])
}

/** Logs every state change: an opening as a warning with the error that opened it. */
function logStateChanges (log: FastifyBaseLogger): BreakerObserver['changed'] {
  return (breaker, _from, to, error, scope) => {
    const message = `circuit breaker "${breaker.name}" ${to === 'open' ? 'opened' : to}${scope === 'fleet' ? ' for the fleet' : ''}`
    const fields = scope === 'fleet' ? { breaker: breaker.name, fleet: true } : { breaker: breaker.name }
    if (to === 'open') log.warn({ ...fields, err: error }, message)
    else if (to === 'isolated') log.warn(fields, message)
    else log.info(fields, message)
  }
}

/** What `app.breaker` needs to make breakers. */
interface BreakerFactory {
  read: OptionReader
  defaults: ResolvedBreakerOptions
  observer: BreakerObserver
  metrics: BreakerMetrics
  join: FleetJoin | undefined
}

/** `app.breaker`: the breaker of a name, made on first use over the plugin's defaults. */
function breakerAccessor ({ read, defaults, observer, metrics, join }: BreakerFactory): BreakerAccessor {
  const breakers = new Map<string, Breaker>()
  const accessor = ((name: string, options?: BreakerOptions): Breaker => {
    if (name === undefined) throw read.fail('name', 'a name of 1 to 64 letters, digits, "_", ".", ":" or "-"', name)
    read.labelValue('name', name, '')
    const existing = breakers.get(name)
    if (existing !== undefined && options === undefined) return existing
    const resolved = resolveBreakerOptions(read, `breaker("${name}")`, options, defaults)
    if (existing !== undefined) {
      const differing = firstDifference(existing.options, resolved)
      if (differing !== undefined) {
        throw new TypeError(`${PLUGIN}: breaker "${name}" already exists with another "${differing}"; use the same options or another name`)
      }
      return existing
    }
    if (resolved.shared && join === undefined) throw read.fail(`breaker("${name}").shared`, 'false unless the plugin has the shared option', true)
    const breaker = new Breaker(name, resolved, observer, resolved.shared ? join : undefined)
    breakers.set(name, breaker)
    metrics.track(breaker)
    return breaker
  }) as BreakerAccessor
  accessor.list = () => [...breakers.values()]
  return accessor
}

/** Starts the fleet's store (the `shared` option) and stops it on close. */
async function startFleet (app: FastifyInstance, settings: ConstructorParameters<typeof FleetStore>[0] | undefined): Promise<FleetJoin | undefined> {
  if (settings === undefined) return undefined
  const store = new FleetStore(settings, app.log)
  app.addHook('onClose', async () => store.close())
  await store.start()
  return (...args) => store.join(...args)
}

const breakerPlugin: FastifyPluginAsync<BreakerPluginOptions> = async (app, rawOptions) => {
  const read = new OptionReader(PLUGIN)
  const opts = read.object<BreakerPluginOptions>('options', rawOptions, ['defaults', 'shared'])
  const shared = resolveShared(read, opts.shared, appRedisOf(app))
  const defaults = resolveBreakerOptions(read, 'defaults', opts.defaults, { ...DEFAULTS, shared: shared !== undefined })
  registerOnce(app, PLUGIN)
  const join = await startFleet(app, shared)
  const metrics = new BreakerMetrics(useMetricsRegistry(app))
  const observer: BreakerObserver = {
    counted: (breaker, result) => metrics.counted(breaker, result),
    changed: logStateChanges(app.log)
  }
  const accessor = breakerAccessor({ read, defaults, observer, metrics, join })
  app.decorate('breaker', accessor)
  app.addHook('onClose', async () => {
    metrics.stop()
    for (const breaker of accessor.list()) breaker.dispose()
  })
}

/**
 * Named circuit breakers; by default they open when, within
 * 10 s, at least 3 calls were made and at least 60 % failed; half-open after
 * 30 s; at most 3 trial calls, further ones refused at once.
 *
 * @example
 * ```ts
 * await app.register(breaker, { defaults: { timeoutMs: 2000 } })
 * const player = await app.breaker('database')
 *   .execute(({ signal }) => app.pg.query({ text: 'SELECT ...', values: [id], signal }))
 * ```
 */
export const breaker = fp(breakerPlugin, { fastify: '5.x', name: PLUGIN })
export default breaker
