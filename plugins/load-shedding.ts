import type { ServerResponse } from 'node:http'
import type { FastifyInstance, FastifyPluginAsync, FastifyRequest, onRequestHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import type { Counter } from 'prom-client'
import { OverloadedError } from './errors.js'
import { collectedGauge, counter, useMetricsRegistry } from './lib/metrics/registry.js'
import { OptionReader } from './lib/plugin/options.js'
import { registerOnce } from './lib/plugin/register-once.js'
import { routeLabel, routeResilience } from './lib/route/route-config.js'
import type { AdaptiveLimitOptions, AdaptiveLimitSettings } from './lib/shedding/adaptive-limit.js'
import { readAdaptiveOptions } from './lib/shedding/adaptive-options.js'
import { Admission } from './lib/shedding/admission.js'
import type { ShedReason } from './lib/shedding/admission.js'
import { EventLoopPressure } from './lib/shedding/event-loop-pressure.js'
import type { EventLoopLimits } from './lib/shedding/event-loop-pressure.js'
import { LimitLearner } from './lib/shedding/limit-learner.js'
import { readPriorityShares } from './lib/shedding/priority-thresholds.js'
import type { PriorityShares, ShedPriority } from './lib/shedding/priority-thresholds.js'
import { kPriority, priorityOfEarlierRoute, readRoutePriority } from './lib/shedding/route-priority.js'
import type { PriorityConfig } from './lib/shedding/route-priority.js'

const PLUGIN = 'fastify-resilience-load-shedding'

export type { AdaptiveLimitOptions, ShedPriority, ShedReason }

/** Options of the load shedding plugin. */
export interface LoadSheddingOptions {
  /**
   * Requests in flight at most: the hard ceiling of the adaptive limit, or
   * the limit itself with `limit: 'static'`.
   * @default 1000
   */
  maxConcurrent?: number
  /**
   * `'adaptive'`: learn the limit from latency (a gradient on round-trip
   * times, after Netflix's Gradient2 and Envoy's adaptive concurrency), up to
   * `maxConcurrent`. `'static'`: a fixed limit of `maxConcurrent` requests in
   * flight, whatever their latency (nothing is learnt).
   * @default 'adaptive'
   */
  limit?: 'static' | 'adaptive'
  /**
   * Settings of the adaptive limit (not allowed with `limit: 'static'`).
   * @default see {@link AdaptiveLimitOptions}
   * @example
   * ```ts
   * await app.register(loadShedding, { maxConcurrent: 500, adaptive: { minLimit: 10 } })
   * ```
   */
  adaptive?: AdaptiveLimitOptions
  /**
   * Share of the limit up to which each priority is admitted: sheddable
   * requests are refused first, critical ones keep the headroom above the others.
   * @default { sheddable: 0.8, normal: 0.95, critical: 1 }
   */
  priorityShares?: Partial<Record<ShedPriority, number>>
  /**
   * `Retry-After` of a refusal, in seconds.
   * @default 5
   */
  retryAfterSeconds?: number
  /**
   * Refuse non-critical requests while the event loop lags by more than this
   * (ms), measured as how late the sampling timer fires.
   * @default undefined (not watched)
   */
  maxEventLoopDelayMs?: number
  /**
   * Refuse non-critical requests while the event-loop utilization exceeds this (0 to 1).
   * @default undefined (not watched)
   */
  maxEventLoopUtilization?: number
  /**
   * How often the event loop is sampled (on an unref'd timer), in milliseconds.
   * @default 1000
   */
  sampleIntervalMs?: number
  /**
   * Builds the error a refused request gets, instead of the built-in
   * `FST_RESILIENCE_OVERLOADED` body (as @fastify/rate-limit's
   * `errorResponseBuilder`). The error goes through the app's error handler,
   * with `Retry-After` already set on the reply; give it a `statusCode`.
   * @default undefined (the built-in 503, pre-serialised: the cheapest refusal)
   * @example
   * ```ts
   * errorResponseBuilder: (request, { reason }) => Object.assign(new Error(`busy (${reason})`), { statusCode: 503 })
   * ```
   */
  errorResponseBuilder?: (request: FastifyRequest, context: { reason: ShedReason, retryAfterSeconds: number }) => Error
}

/** `app.loadShedding`. */
export interface LoadShedding {
  /** Requests admitted and not finished yet (routes with `shed: false` are not counted). */
  readonly inFlight: number
  /** The live limit: `maxConcurrent`, or what the adaptive limit learnt. */
  readonly limit: number
  /** The process-pressure reason refusing non-critical requests now, if any. */
  readonly pressure: 'event_loop_delay' | 'event_loop_utilization' | undefined
  /** True when a normal request would be refused now. */
  isOverloaded: () => boolean
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Load shedding state (fastify-resilience-load-shedding). */
    loadShedding: LoadShedding
  }
}

declare module './lib/route/route-config.js' {
  interface RouteResilienceOptions {
    /** `{ priority }` (default `'normal'`), or `false`: never shed (health, metrics). */
    shed?: { priority?: ShedPriority } | false
  }
}

type ErrorResponseBuilder = NonNullable<LoadSheddingOptions['errorResponseBuilder']>

/** The options, checked, with their defaults filled in. */
interface ResolvedLoadSheddingOptions {
  maxConcurrent: number
  /** The adaptive limit's settings; undefined with `limit: 'static'`. */
  adaptive: AdaptiveLimitSettings | undefined
  shares: PriorityShares
  retryAfterSeconds: number
  /** Undefined when neither event-loop limit is set: then nothing is sampled. */
  eventLoop: EventLoopLimits | undefined
  buildError: ErrorResponseBuilder | undefined
}

const OPTION_KEYS: ReadonlyArray<keyof LoadSheddingOptions> = ['maxConcurrent', 'limit', 'adaptive', 'priorityShares', 'retryAfterSeconds',
  'maxEventLoopDelayMs', 'maxEventLoopUtilization', 'sampleIntervalMs', 'errorResponseBuilder']

/** Reads the plugin's options; a mistake throws one sentence naming the option. */
function resolveLoadSheddingOptions (read: OptionReader, rawOptions: unknown): ResolvedLoadSheddingOptions {
  const opts = read.object<LoadSheddingOptions>('options', rawOptions, OPTION_KEYS)
  const maxConcurrent = read.number('maxConcurrent', opts.maxConcurrent, 1000, { min: 1, integer: true })
  const mode = read.oneOf('limit', opts.limit, 'adaptive', ['static', 'adaptive'])
  if (mode === 'static' && opts.adaptive !== undefined) throw read.fail('adaptive', 'left out with limit: "static"', opts.adaptive)
  const adaptive = mode === 'adaptive' ? readAdaptiveOptions(read, opts.adaptive, maxConcurrent) : undefined
  const shares = readPriorityShares(read, opts.priorityShares)
  const retryAfterSeconds = read.number('retryAfterSeconds', opts.retryAfterSeconds, 5, { min: 1, integer: true })
  const maxDelayMs = opts.maxEventLoopDelayMs === undefined ? undefined : read.number('maxEventLoopDelayMs', opts.maxEventLoopDelayMs, 0, { min: 1 })
  const maxUtilization = opts.maxEventLoopUtilization === undefined ? undefined : read.number('maxEventLoopUtilization', opts.maxEventLoopUtilization, 0, { min: 0, max: 1 })
  const sampleIntervalMs = read.number('sampleIntervalMs', opts.sampleIntervalMs, 1000, { min: 10 })
  const buildError = read.function<ErrorResponseBuilder>('errorResponseBuilder', opts.errorResponseBuilder)
  const eventLoop = maxDelayMs === undefined && maxUtilization === undefined ? undefined : { maxDelayMs, maxUtilization, sampleIntervalMs }
  return { maxConcurrent, adaptive, shares, retryAfterSeconds, eventLoop, buildError }
}

/** The plugin's metrics: the refusals' counter, and a function that stops the gauges read at scrape time. */
function sheddingMetrics (app: FastifyInstance, admission: Admission): { shedded: Counter<'reason'>, stop: () => void } {
  const registry = useMetricsRegistry(app)
  const shedded = counter(registry, 'requests_shedded_total', {
    help: 'Requests refused by load shedding, by reason.',
    labelNames: ['reason']
  })
  const stopInFlight = collectedGauge(registry, 'requests_in_flight', { help: 'Requests being served now.' }, (gauge) => gauge.set(admission.inFlight))
  const stopLimit = collectedGauge(registry, 'concurrency_limit', { help: 'Requests in flight at most now (the adaptive limit as learnt).' }, (gauge) => gauge.set(admission.limit))
  return { shedded, stop: () => { stopInFlight(); stopLimit() } }
}

/** What the `onRequest` hook works with, built once at registration. */
interface ShedHookParts {
  admission: Admission
  shedded: Counter<'reason'>
  retryAfterSeconds: number
  buildError: ErrorResponseBuilder | undefined
  /** Undefined with a static limit. */
  learner: LimitLearner | undefined
}

/**
 * The `onRequest` hook: refuses a request its priority has no room for (503
 * with `Retry-After`), or counts it in flight until its response closes.
 */
function shedHook ({ admission, shedded, retryAfterSeconds, buildError, learner }: ShedHookParts): onRequestHookHandler {
  const retryAfter = String(retryAfterSeconds)
  // Fastify's usual error body, built once: refusals must stay cheap under overload.
  const refusal = new OverloadedError()
  const refusalBody = JSON.stringify({ statusCode: 503, code: refusal.code, error: 'Service Unavailable', message: refusal.message })
  // One shared listener, called once per response by 'close': after the reply, or when the client went away.
  const listener = learner === undefined
    ? function release (this: ServerResponse): void { admission.inFlight-- }
    : function releaseAndLearn (this: ServerResponse): void { admission.inFlight--; learner.closed(this) }
  return (request, reply, done) => {
    const config = request.routeOptions.config as PriorityConfig
    const priority = config[kPriority] ?? priorityOfEarlierRoute(config)
    if (priority === false) {
      done()
      return
    }
    const reason = admission.refusal(priority)
    if (reason !== undefined) {
      shedded.inc({ reason })
      reply.header('retry-after', retryAfter)
      if (buildError === undefined) reply.code(503).type('application/json; charset=utf-8').send(refusalBody)
      else done(buildError(request, { reason, retryAfterSeconds }))
      return
    }
    admission.inFlight++
    learner?.admitted(reply.raw, admission.inFlight)
    // 'close' comes once per response; `on` spares the wrapper `once` would allocate.
    reply.raw.on('close', listener)
    done()
  }
}

const loadSheddingPlugin: FastifyPluginAsync<LoadSheddingOptions> = async (app, rawOptions) => {
  const options = resolveLoadSheddingOptions(new OptionReader(PLUGIN), rawOptions)
  registerOnce(app, PLUGIN)

  const eventLoop = options.eventLoop === undefined ? undefined : new EventLoopPressure(options.eventLoop)
  const admission = new Admission(options.shares, options.maxConcurrent, eventLoop)
  const metrics = sheddingMetrics(app, admission)
  const learner = options.adaptive === undefined
    ? undefined
    : new LimitLearner(admission, options.adaptive, (move) => {
      app.log.info({ concurrencyLimit: move.to, previousLimit: move.from, withinMs: Math.round(move.withinMs) }, `load shedding: the adaptive concurrency limit moved from ${move.from} to ${move.to}`)
    })
  const { retryAfterSeconds, buildError } = options
  app.addHook('onRequest', shedHook({ admission, shedded: metrics.shedded, retryAfterSeconds, buildError, learner }))

  // A route's priority is read once, when it is added, so that a bad `shed` fails at start-up naming the route.
  app.addHook('onRoute', (route) => {
    const label = routeLabel(route)
    const priority = readRoutePriority(new OptionReader(`${PLUGIN}: route "${label}"`), routeResilience(route.config, label)?.shed)
    route.config = { ...route.config, [kPriority]: priority } as typeof route.config
  })

  app.decorate('loadShedding', {
    get inFlight () { return admission.inFlight },
    get limit () { return admission.limit },
    get pressure () { return eventLoop?.pressure },
    isOverloaded: () => admission.refusal('normal') !== undefined
  } satisfies LoadShedding)

  app.addHook('onClose', async () => {
    eventLoop?.stop()
    metrics.stop()
  })
}

/**
 * Sheds load in an `onRequest` hook: at most as many requests in flight as
 * a limit learnt from their latency allows (up to `maxConcurrent`, 1000), or
 * exactly `maxConcurrent` with `limit: 'static'`; sheddable routes refused first and critical ones last,
 * optionally also on event-loop pressure; a refusal is 503
 * `FST_RESILIENCE_OVERLOADED` with `Retry-After`. Register it first, before
 * other hooks and routes.
 *
 * @example
 * ```ts
 * await app.register(loadShedding, { maxConcurrent: 200, maxEventLoopDelayMs: 200 })
 * app.get('/health/live', { config: { resilience: { shed: false } } }, () => 'ok')
 * app.get('/recommendations', { config: { resilience: { shed: { priority: 'sheddable' } } } }, handler)
 * ```
 */
export const loadShedding = fp(loadSheddingPlugin, { fastify: '5.x', name: PLUGIN })
export default loadShedding
