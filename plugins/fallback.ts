import type { FastifyBaseLogger, FastifyPluginAsync } from 'fastify'
import fp from 'fastify-plugin'
import { neverAborted } from './lib/time/abort.js'
import { counter, useMetricsRegistry } from './lib/metrics/registry.js'
import { OptionReader } from './lib/plugin/options.js'
import { registerOnce } from './lib/plugin/register-once.js'
import { Deadlines } from './lib/time/deadlines.js'
import { callWithTimeout } from './lib/time/timeout.js'
import { isServerFailure } from './lib/failure/failure.js'

const PLUGIN = 'fastify-resilience-fallback'

/** Which tier answered. */
export type FallbackTier = 'primary' | 'cache' | 'default'

/** What every tier receives. */
export interface TierContext {
  /** Aborts when the tier's timeout fires or the caller gives up. */
  signal: AbortSignal
  /** Errors of the tiers that failed before this one, in order. */
  errors: unknown[]
}

/** Deadlines of the tiers, in milliseconds. */
export interface FallbackTimeouts {
  /** @default undefined (none: put the primary behind a breaker with its own timeout) */
  primary?: number
  /** @default 100 (a dead or paused cache costs at most this much) */
  cache?: number
  /** @default 1000 (the write-through; it never delays the answer) */
  store?: number
  /** @default undefined (none) */
  default?: number
}

/** One call of `app.fallback`. */
export interface FallbackOptions<T> {
  /** Names the chain in logs and in the `name` label of `fallback_total`. */
  name: string
  /** The source of truth. */
  primary: (context: TierContext) => PromiseLike<T> | T
  /** A cached copy; return `undefined` for a miss. */
  cache?: (context: TierContext) => PromiseLike<T | undefined> | T | undefined
  /** The degraded answer of last resort; it sees why the others failed. */
  fallback: (context: TierContext) => PromiseLike<T> | T
  /** Writes a primary answer through to the cache, after the reply; failures are only logged. */
  store?: (value: T, context: { signal: AbortSignal }) => PromiseLike<unknown> | unknown
  /** The caller's signal: when it aborts, no further tier runs. */
  signal?: AbortSignal
  /** Per-tier deadlines, over the plugin's. */
  timeoutMs?: FallbackTimeouts
  /** Where tier failures are logged; routes pass `request.log` so lines carry the request id. */
  logger?: FastifyBaseLogger
}

/** What `app.fallback` resolves to. */
export interface FallbackResult<T> {
  value: T
  tier: FallbackTier
}

/** Options of the fallback plugin. */
export interface FallbackPluginOptions {
  /** Default per-tier deadlines. */
  timeoutMs?: FallbackTimeouts
}

export type FallbackFunction = <T>(options: FallbackOptions<T>) => Promise<FallbackResult<T>>

declare module 'fastify' {
  interface FastifyInstance {
    /** Primary → cache → default with write-through (fastify-resilience-fallback). */
    fallback: FallbackFunction
  }
}

const TIMEOUT_KEYS = ['primary', 'cache', 'store', 'default'] as const
const OPTION_KEYS = ['name', 'primary', 'cache', 'fallback', 'store', 'signal', 'timeoutMs', 'logger'] as const

function resolveTimeouts (read: OptionReader, option: string, raw: unknown, base: FallbackTimeouts): FallbackTimeouts {
  const opts = read.object<FallbackTimeouts>(option, raw, TIMEOUT_KEYS)
  const resolved: FallbackTimeouts = { ...base }
  for (const key of TIMEOUT_KEYS) {
    if (opts[key] !== undefined) resolved[key] = read.number(`${option}.${key}`, opts[key], 0, { min: 1 })
  }
  return resolved
}

const fallbackPlugin: FastifyPluginAsync<FallbackPluginOptions> = async (app, rawOptions) => {
  const read = new OptionReader(PLUGIN)
  const opts = read.object<FallbackPluginOptions>('options', rawOptions, ['timeoutMs'])
  const defaults = resolveTimeouts(read, 'timeoutMs', opts.timeoutMs, { cache: 100, store: 1000 })
  registerOnce(app, PLUGIN)
  const served = counter(useMetricsRegistry(app), 'fallback_total', {
    help: 'Answers of each fallback chain by the tier that gave them (primary, cache, default), or failed.',
    labelNames: ['name', 'tier']
  })

  // A tier is abandoned at its deadline even if it ignores its signal; one queue per duration.
  const queues = new Map<number, Deadlines>()
  const deadlinesOf = (ms: number | undefined): Deadlines | undefined => {
    if (ms === undefined) return undefined
    let deadlines = queues.get(ms)
    if (deadlines === undefined) {
      deadlines = new Deadlines(ms)
      queues.set(ms, deadlines)
    }
    return deadlines
  }

  const runTier = async <R>(fn: (context: TierContext) => PromiseLike<R> | R, errors: unknown[], signal: AbortSignal, ms: number | undefined): Promise<R> =>
    await callWithTimeout(async ({ signal: tierSignal }) => await fn({ signal: tierSignal, errors }), signal, deadlinesOf(ms))

  const run: FallbackFunction = async (options) => {
    const call = read.object<FallbackOptions<unknown>>('fallback()', options, OPTION_KEYS)
    if (call.name === undefined || call.primary === undefined || call.fallback === undefined) {
      throw new TypeError(`${PLUGIN}: fallback() needs "name", "primary" and "fallback"`)
    }
    const name = read.labelValue('fallback().name', call.name, '')
    type Tier = (context: TierContext) => unknown
    const primary = read.function<Tier>('fallback().primary', call.primary) as Tier
    const fallback = read.function<Tier>('fallback().fallback', call.fallback) as Tier
    const cache = read.function<Tier>('fallback().cache', call.cache)
    const store = read.function<NonNullable<FallbackOptions<unknown>['store']>>('fallback().store', call.store)
    const timeouts = call.timeoutMs === undefined ? defaults : resolveTimeouts(read, 'fallback().timeoutMs', call.timeoutMs, defaults)
    const signal = call.signal ?? neverAborted
    const log = call.logger ?? app.log
    const errors: unknown[] = []

    const failed = (tier: FallbackTier, error: unknown): void => {
      signal.throwIfAborted()
      errors.push(error)
      log.warn({ fallback: name, tier, err: error }, `fallback "${name}": ${tier} tier failed`)
    }

    try {
      const value = await runTier(primary, errors, signal, timeouts.primary)
      served.inc({ name, tier: 'primary' })
      if (store !== undefined) writeThrough(store, value, timeouts.store as number)
      return { value, tier: 'primary' } as FallbackResult<never>
    } catch (error) {
      if (!isServerFailure(error)) {
        // "Not found" and other client errors are answers, not outages: no cached or default stand-in.
        served.inc({ name, tier: 'primary' })
        throw error
      }
      failed('primary', error)
    }

    if (cache !== undefined) {
      try {
        const value = await runTier(cache, errors, signal, timeouts.cache)
        if (value !== undefined) {
          served.inc({ name, tier: 'cache' })
          return { value, tier: 'cache' } as FallbackResult<never>
        }
        log.debug({ fallback: name, tier: 'cache' }, `fallback "${name}": cache miss`)
      } catch (error) {
        failed('cache', error)
      }
    }

    try {
      const value = await runTier(fallback, errors, signal, timeouts.default)
      served.inc({ name, tier: 'default' })
      return { value, tier: 'default' } as FallbackResult<never>
    } catch (error) {
      served.inc({ name, tier: 'failed' })
      throw error
    }

    function writeThrough (write: NonNullable<FallbackOptions<unknown>['store']>, value: unknown, ms: number): void {
      setImmediate(() => {
        runTier(async ({ signal: storeSignal }) => await write(value, { signal: storeSignal }), [], neverAborted, ms).catch((error: unknown) => {
          log.warn({ fallback: name, tier: 'store', err: error }, `fallback "${name}": write-through failed`)
        })
      })
    }
  }
  app.decorate('fallback', run)
}

/**
 * Primary → cache → default: each tier runs only when the one before failed,
 * a slow cache is cut by its own deadline (100 ms), a primary answer is written
 * through to the cache without delaying the reply, and a "not found" from the
 * primary is never papered over.
 *
 * @example
 * ```ts
 * await app.register(fallback)
 * const { value, tier } = await app.fallback({
 *   name: 'player',
 *   primary: ({ signal }) => app.breaker('database').execute(() => loadPlayer(id), signal),
 *   cache: async () => JSON.parse(await app.redis.get(`player:${id}`) ?? 'null') ?? undefined,
 *   store: (player) => app.redis.set(`player:${id}`, JSON.stringify(player), 'EX', 300),
 *   fallback: () => ({ id, name: 'unknown', degraded: true }),
 *   logger: request.log,
 * })
 * ```
 */
export const fallback = fp(fallbackPlugin, { fastify: '5.x', name: PLUGIN })
export default fallback
