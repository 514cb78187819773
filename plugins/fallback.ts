import type { FastifyBaseLogger, FastifyPluginAsync } from 'fastify'
import fp from 'fastify-plugin'
import type { Counter } from 'prom-client'
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

type Tier = (context: TierContext) => unknown
type StoreTier = NonNullable<FallbackOptions<unknown>['store']>

/** One call of `app.fallback`, its options checked, with what its tiers share. */
interface FallbackCall {
  name: string
  primary: Tier
  cache: Tier | undefined
  fallback: Tier
  store: StoreTier | undefined
  timeouts: FallbackTimeouts
  signal: AbortSignal
  log: FastifyBaseLogger
  /** Errors of the tiers that failed so far. */
  errors: unknown[]
}

/** Checks the options of one call; `defaults` are the plugin's tier deadlines. */
function readCall (read: OptionReader, options: unknown, defaults: FallbackTimeouts, log: FastifyBaseLogger): FallbackCall {
  const call = read.object<FallbackOptions<unknown>>('fallback()', options, OPTION_KEYS)
  if (call.name === undefined || call.primary === undefined || call.fallback === undefined) {
    throw new TypeError(`${PLUGIN}: fallback() needs "name", "primary" and "fallback"`)
  }
  return {
    name: read.labelValue('fallback().name', call.name, ''),
    primary: read.function<Tier>('fallback().primary', call.primary) as Tier,
    fallback: read.function<Tier>('fallback().fallback', call.fallback) as Tier,
    cache: read.function<Tier>('fallback().cache', call.cache),
    store: read.function<StoreTier>('fallback().store', call.store),
    timeouts: call.timeoutMs === undefined ? defaults : resolveTimeouts(read, 'fallback().timeoutMs', call.timeoutMs, defaults),
    signal: call.signal ?? neverAborted,
    log: call.logger ?? log,
    errors: []
  }
}

/** Runs the tiers of a call, one after the other, each within its deadline, and counts who answered. */
class FallbackChain {
  private readonly served: Counter<'name' | 'tier'>
  /** A tier is abandoned at its deadline even if it ignores its signal; one queue per duration. */
  private readonly queues = new Map<number, Deadlines>()

  constructor (served: Counter<'name' | 'tier'>) {
    this.served = served
  }

  async run (call: FallbackCall): Promise<FallbackResult<unknown>> {
    const primary = await this.tryPrimary(call)
    if (primary !== undefined) return primary
    const cached = call.cache === undefined ? undefined : await this.tryCache(call, call.cache)
    if (cached !== undefined) return cached
    try {
      const value = await this.runTier(call.fallback, call, call.signal, call.timeouts.default)
      this.served.inc({ name: call.name, tier: 'default' })
      return { value, tier: 'default' }
    } catch (error) {
      this.served.inc({ name: call.name, tier: 'failed' })
      throw error
    }
  }

  /** The primary's answer, or undefined once it failed (an error the request caused is thrown). */
  private async tryPrimary (call: FallbackCall): Promise<FallbackResult<unknown> | undefined> {
    try {
      const value = await this.runTier(call.primary, call, call.signal, call.timeouts.primary)
      this.served.inc({ name: call.name, tier: 'primary' })
      if (call.store !== undefined) this.writeThrough(call, call.store, value)
      return { value, tier: 'primary' }
    } catch (error) {
      if (!isServerFailure(error)) {
        // "Not found" and other client errors are answers, not outages: no cached or default stand-in.
        this.served.inc({ name: call.name, tier: 'primary' })
        throw error
      }
      this.failed(call, 'primary', error)
      return undefined
    }
  }

  /** The cached copy, or undefined on a miss or a failure. */
  private async tryCache (call: FallbackCall, cache: Tier): Promise<FallbackResult<unknown> | undefined> {
    try {
      const value = await this.runTier(cache, call, call.signal, call.timeouts.cache)
      if (value !== undefined) {
        this.served.inc({ name: call.name, tier: 'cache' })
        return { value, tier: 'cache' }
      }
      call.log.debug({ fallback: call.name, tier: 'cache' }, `fallback "${call.name}": cache miss`)
    } catch (error) {
      this.failed(call, 'cache', error)
    }
    return undefined
  }

  /** A tier failed: stop if the caller gave up, else remember why and go on. */
  private failed (call: FallbackCall, tier: FallbackTier, error: unknown): void {
    call.signal.throwIfAborted()
    call.errors.push(error)
    call.log.warn({ fallback: call.name, tier, err: error }, `fallback "${call.name}": ${tier} tier failed`)
  }

  /** Writes a primary answer to the cache after the reply; a failure is only logged. */
  private writeThrough (call: FallbackCall, store: StoreTier, value: unknown): void {
    setImmediate(() => {
      const write: Tier = async ({ signal }) => await store(value, { signal })
      this.runTier(write, { errors: [] }, neverAborted, call.timeouts.store).catch((error: unknown) => {
        call.log.warn({ fallback: call.name, tier: 'store', err: error }, `fallback "${call.name}": write-through failed`)
      })
    })
  }

  private async runTier (tier: Tier, { errors }: { errors: unknown[] }, signal: AbortSignal, ms: number | undefined): Promise<unknown> {
    return await callWithTimeout(async ({ signal: tierSignal }) => await tier({ signal: tierSignal, errors }), signal, this.deadlinesOf(ms))
  }

  private deadlinesOf (ms: number | undefined): Deadlines | undefined {
    if (ms === undefined) return undefined
    let deadlines = this.queues.get(ms)
    if (deadlines === undefined) {
      deadlines = new Deadlines(ms)
      this.queues.set(ms, deadlines)
    }
    return deadlines
  }
}

const fallbackPlugin: FastifyPluginAsync<FallbackPluginOptions> = async (app, rawOptions) => {
  const read = new OptionReader(PLUGIN)
  const opts = read.object<FallbackPluginOptions>('options', rawOptions, ['timeoutMs'])
  const defaults = resolveTimeouts(read, 'timeoutMs', opts.timeoutMs, { cache: 100, store: 1000 })
  registerOnce(app, PLUGIN)
  const chain = new FallbackChain(counter(useMetricsRegistry(app), 'fallback_total', {
    help: 'Answers of each fallback chain by the tier that gave them (primary, cache, default), or failed.',
    labelNames: ['name', 'tier']
  }))
  const run = async (options: FallbackOptions<unknown>): Promise<FallbackResult<unknown>> => await chain.run(readCall(read, options, defaults, app.log))
  app.decorate('fallback', run as FallbackFunction)
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
