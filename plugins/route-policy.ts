import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify'
import fp from 'fastify-plugin'
import type { BreakerOptions } from './breaker.js'
import type { Breaker } from './lib/breaker/breaker.js'
import { neverAborted } from './lib/time/abort.js'
import { Deadlines } from './lib/time/deadlines.js'
import { callWithTimeout } from './lib/time/timeout.js'
import { isCausedByRequest } from './lib/failure/failure.js'
import { DEPENDENCY_RETRY_AFTER_MS, clientSafeError } from './lib/failure/client-safe-error.js'
import { OptionReader, isPlainObject } from './lib/plugin/options.js'
import { registerOnce } from './lib/plugin/register-once.js'
import type { RetrySettings } from './lib/retry/retrier.js'
import { RequestSignals } from './lib/route/request-signals.js'
import { routeLabel, routeResilience } from './lib/route/route-config.js'
import type { ROUTE_OPTION_KEYS } from './lib/route/route-config.js'
import { retryInternalsOf } from './lib/retry/internals.js'
import type { RetryInternals } from './lib/retry/internals.js'
import { resolveRetryOptions, retrySettings } from './lib/retry/settings.js'
import type { RetryOptions } from './lib/retry/settings.js'

const PLUGIN = 'fastify-resilience-route-policy'
const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'])

/** A route's retry options: the retry plugin's options, plus `allowNonIdempotent`. */
export interface RouteRetryOptions extends Omit<RetryOptions, 'signal'> {
  /**
   * Also retry POST and PATCH requests (only if the handler is safe to repeat).
   * @default false
   */
  allowNonIdempotent?: boolean
}

/**
 * Answers instead of an error that got through every other layer; its value is
 * sent with 200. Errors the request caused (a 404, a 409, a PostgreSQL
 * constraint error) are never replaced.
 */
export type RouteFallback = (request: FastifyRequest, error: unknown) => unknown

declare module './lib/route/route-config.js' {
  interface RouteResilienceOptions {
    /** Deadline of each attempt in milliseconds: 503 `FST_RESILIENCE_TIMEOUT`, counted as a breaker failure. */
    timeoutMs?: number
    /** Retry the handler (idempotent methods only, unless `allowNonIdempotent`), or `false`. */
    retry?: RouteRetryOptions | false
    /** The breaker every attempt goes through: its name, or `{ name, ...options }`. */
    breaker?: string | ({ name: string } & BreakerOptions)
    /** Answer with this instead of the error (never instead of an error the request caused). */
    fallback?: RouteFallback
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * Aborts when the current attempt times out or the client disconnects.
     * Pass it to pg, ioredis or fetch so abandoned work stops. Live on routes
     * with `timeoutMs`, `retry`, `breaker` or `fallback`; elsewhere it never aborts.
     */
    readonly attemptSignal: AbortSignal
  }
}

const kSignals = Symbol('fastify-resilience.request-signals')
type WithSignals = FastifyRequest & { [kSignals]: RequestSignals | null }

function signalsOf (request: FastifyRequest, reply: FastifyReply): RequestSignals {
  const holder = request as WithSignals
  holder[kSignals] ??= new RequestSignals(reply)
  return holder[kSignals]
}

interface PipelineParts {
  handler: RouteHandlerMethod
  timeoutMs: number | undefined
  retry: { internals: RetryInternals, settings: RetrySettings, allowNonIdempotent: boolean } | undefined
  breaker: Breaker | undefined
  fallback: RouteFallback | undefined
  /** Errors thrown after the handler had replied: never retried, never replaced. */
  answered: WeakSet<object>
}

/** Fallback → retry → breaker → per-attempt timeout → handler, built once per route. */
class RoutePipeline {
  private readonly parts: PipelineParts
  /** One timer for all the route's attempts (they share one duration). */
  private readonly deadlines: Deadlines | undefined

  constructor (parts: PipelineParts) {
    this.parts = parts
    this.deadlines = parts.timeoutMs === undefined ? undefined : new Deadlines(parts.timeoutMs)
  }

  async handle (instance: FastifyInstance, request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
    const signals = signalsOf(request, reply)
    try {
      return await this.retried(instance, request, reply, signals)
    } catch (error) {
      const { breaker, fallback, answered } = this.parts
      if (reply.sent || (typeof error === 'object' && error !== null && answered.has(error))) throw error
      // A client error is an answer, not an outage: no fallback stands in for it.
      if (fallback === undefined || isCausedByRequest(error)) {
        // An open breaker knows when to come back; otherwise the default.
        const retryAfterMs = breaker !== undefined && breaker.retryAfterMs > 0 ? breaker.retryAfterMs : DEPENDENCY_RETRY_AFTER_MS
        throw clientSafeError(error, retryAfterMs)
      }
      reply.code(200)
      return await fallback(request, error)
    }
  }

  // retried and guarded hand promises through without an async layer of their
  // own: everything they call is async and never throws synchronously.
  private retried (instance: FastifyInstance, request: FastifyRequest, reply: FastifyReply, signals: RequestSignals): Promise<unknown> {
    const retry = this.parts.retry
    if (retry === undefined || !(retry.allowNonIdempotent || IDEMPOTENT_METHODS.has(request.method))) {
      return this.guarded(instance, request, reply, signals)
    }
    // The client signal is built only if a retry is needed: most calls succeed at once.
    return retry.internals.retrier.run(retry.settings, () => this.guarded(instance, request, reply, signals), () => signals.client)
  }

  private guarded (instance: FastifyInstance, request: FastifyRequest, reply: FastifyReply, signals: RequestSignals): Promise<unknown> {
    const breaker = this.parts.breaker
    if (breaker === undefined) return this.attempt(instance, request, reply, signals)
    return breaker.execute(() => this.attempt(instance, request, reply, signals))
  }

  private async attempt (instance: FastifyInstance, request: FastifyRequest, reply: FastifyReply, signals: RequestSignals): Promise<unknown> {
    const { handler, breaker, answered } = this.parts
    signals.startAttempt()
    try {
      if (this.deadlines === undefined) return await handler.call(instance, request, reply)
      return await callWithTimeout(() => handler.call(instance, request, reply), neverAborted, this.deadlines, (error) => {
        // A handler that already replied and then lingers is done, as far as the client knows.
        if (reply.sent) return { settled: reply }
        signals.abortAttempt(error)
        return undefined
      })
    } catch (error) {
      if (reply.sent && typeof error === 'object' && error !== null) answered.add(error)
      // The client went away: not the dependency's fault.
      if (breaker !== undefined && signals.clientGone) breaker.abandon(error)
      throw error
    }
  }
}

function buildPipeline (parts: PipelineParts): RouteHandlerMethod {
  const pipeline = new RoutePipeline(parts)
  return function resilientHandler (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
    return pipeline.handle(this, request, reply)
  }
}

/** The breaker of `config.resilience.breaker`, made by the breaker plugin. */
function resolveBreaker (app: FastifyInstance, read: OptionReader, raw: unknown): Breaker | undefined {
  if (raw === undefined) return undefined
  if (!app.hasDecorator('breaker')) throw new TypeError(`${read.plugin}: "config.resilience.breaker" needs the breaker plugin, registered before the routes`)
  if (typeof raw !== 'string' && !isPlainObject(raw)) throw read.fail('config.resilience.breaker', 'a breaker name or { name, ...options }', raw)
  const { name, ...options } = typeof raw === 'string' ? { name: raw } : raw as { name?: unknown }
  try {
    return app.breaker(name as string, typeof raw === 'string' ? undefined : options)
  } catch (error) {
    throw new TypeError(`${read.plugin}: "config.resilience.breaker": ${(error as Error).message}`)
  }
}

/** The settings of `config.resilience.retry`, over the retry plugin's defaults; errors thrown after the reply are never retried. */
function resolveRetry (app: FastifyInstance, read: OptionReader, raw: unknown, answered: WeakSet<object>): PipelineParts['retry'] {
  if (raw === undefined || raw === false) return undefined
  const internals = retryInternalsOf(app)
  if (internals === undefined) throw new TypeError(`${read.plugin}: "config.resilience.retry" needs the retry plugin, registered before the routes`)
  if (!isPlainObject(raw)) throw read.fail('config.resilience.retry', 'an object or false', raw)
  const { allowNonIdempotent, ...options } = raw
  const defaults = resolveRetryOptions(read, 'config.resilience.retry', options, internals.defaults)
  const isRetryable = defaults.isRetryable
  return {
    internals,
    settings: retrySettings({ ...defaults, isRetryable: (error) => !(typeof error === 'object' && error !== null && answered.has(error)) && isRetryable(error) }),
    allowNonIdempotent: read.boolean('config.resilience.retry.allowNonIdempotent', allowNonIdempotent, false)
  }
}

const routePolicyPlugin: FastifyPluginAsync = async (app) => {
  registerOnce(app, PLUGIN)
  app.decorateRequest(kSignals, null)
  app.decorateRequest('attemptSignal', {
    getter (this: FastifyRequest) {
      const signals = (this as WithSignals)[kSignals]
      return signals === null ? neverAborted : signals.attempt
    }
  })
  app.addHook('onRoute', (route) => {
    const label = routeLabel(route)
    const resilience = routeResilience(route.config, label)
    if (resilience === undefined) return
    const read = new OptionReader(`${PLUGIN}: route "${label}"`)
    const opts = resilience as Record<(typeof ROUTE_OPTION_KEYS)[number], unknown>
    if (opts.flag !== undefined && !app.hasDecorator('flags')) {
      throw new TypeError(`${read.plugin}: "config.resilience.flag" needs the flags plugin, registered before the routes`)
    }
    const timeoutMs = opts.timeoutMs === undefined ? undefined : read.number('config.resilience.timeoutMs', opts.timeoutMs, 0, { min: 1 })
    const fallback = read.function<RouteFallback>('config.resilience.fallback', opts.fallback)
    const breaker = resolveBreaker(app, read, opts.breaker)
    const answered = new WeakSet<object>()
    const retry = resolveRetry(app, read, opts.retry, answered)
    if (timeoutMs === undefined && retry === undefined && breaker === undefined && fallback === undefined) return
    route.handler = buildPipeline({ handler: route.handler, timeoutMs, retry, breaker, fallback, answered })
  })
}

/**
 * Reads each route's `config.resilience` when the route is declared and wraps
 * its handler once: fallback → retry → breaker → per-attempt timeout →
 * handler (load shedding and the flag check run before, in `onRequest`).
 * Routes without these options are left untouched. Register it (and the
 * plugins the options use) before the routes.
 *
 * @example
 * ```ts
 * app.get('/players/:id', {
 *   config: { resilience: { timeoutMs: 2000, retry: { maxRetries: 2 }, breaker: 'database', fallback: () => ({ degraded: true }) } }
 * }, async (request) => loadPlayer(request.params.id, request.attemptSignal))
 * ```
 */
export const routePolicy = fp(routePolicyPlugin, { fastify: '5.x', name: PLUGIN })
export default routePolicy
