import { performance } from 'node:perf_hooks'
import type { ServerResponse } from 'node:http'
import type { FastifyPluginAsync, FastifyRequest, onRequestHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import { OverloadedError } from './errors.js'
import { collectedGauge, counter, useMetricsRegistry } from './lib/metrics/registry.js'
import { OptionReader, isPlainObject } from './lib/plugin/options.js'
import { registerOnce } from './lib/plugin/register-once.js'
import { AdaptiveLimit } from './lib/shedding/adaptive-limit.js'
import type { AdaptiveLimitOptions } from './lib/shedding/adaptive-limit.js'
import { readAdaptiveOptions } from './lib/shedding/adaptive-options.js'
import { LimitMoves } from './lib/shedding/limit-moves.js'
import { routeLabel, routeResilience } from './lib/route/route-config.js'

const PLUGIN = 'fastify-resilience-load-shedding'

/** How willingly a route's requests are refused under load. */
export type ShedPriority = 'critical' | 'normal' | 'sheddable'

/** Why a request was refused: the `reason` label of `requests_shedded_total`. */
export type ShedReason = 'concurrency' | 'priority' | 'event_loop_delay' | 'event_loop_utilization'

export type { AdaptiveLimitOptions }

/** Options of the load shedding plugin. */
export interface LoadSheddingOptions {
  /**
   * Requests in flight at most: the hard ceiling of the adaptive limit, or
   * the limit itself with `limit: 'static'` (the Go template's behaviour).
   * @default 1000
   */
  maxConcurrent?: number
  /**
   * `'adaptive'`: learn the limit from latency (a gradient on round-trip
   * times, after Netflix's Gradient2 and Envoy's adaptive concurrency), up to
   * `maxConcurrent`. `'static'`: admit `maxConcurrent` requests, whatever
   * their latency (the Go template's behaviour).
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

const PRIORITIES: readonly ShedPriority[] = ['critical', 'normal', 'sheddable']
const DEFAULT_SHARES: Record<ShedPriority, number> = { sheddable: 0.8, normal: 0.95, critical: 1 }
/** Where the route's priority is kept on its `config`, decided once in `onRoute`. */
const kPriority = Symbol('fastify-resilience.shed-priority')
/** When a response's request was admitted, and how many were in flight then (adaptive limit only). */
const kAdmittedAtMs = Symbol('fastify-resilience.admitted-at')
const kAdmittedInFlight = Symbol('fastify-resilience.admitted-in-flight')
/** How long a halving or doubling of the adaptive limit may take to be logged, and how often at most. */
const LIMIT_MOVE_PERIOD_MS = 10_000

interface AdmittedResponse extends ServerResponse { [kAdmittedAtMs]: number, [kAdmittedInFlight]: number }

type RoutePriority = ShedPriority | false

/**
 * Routes registered before this plugin (e.g. /metrics) were not seen by its
 * `onRoute` hook: read their `shed` option on first use, without throwing on
 * the hot path, and remember it.
 */
function priorityOfEarlierRoute (config: { resilience?: unknown, [kPriority]?: RoutePriority }): RoutePriority {
  const shed = (config.resilience as { shed?: { priority?: unknown } | false } | undefined)?.shed
  const priority = shed === false ? false : PRIORITIES.find((p) => p === shed?.priority) ?? 'normal'
  config[kPriority] = priority
  return priority
}

function routePriority (read: OptionReader, shed: unknown): RoutePriority {
  if (shed === undefined) return 'normal'
  if (shed === false) return false
  if (!isPlainObject(shed)) throw read.fail('config.resilience.shed', '{ priority } or false', shed)
  const opts = read.object<{ priority?: ShedPriority }>('config.resilience.shed', shed, ['priority'])
  return read.oneOf('config.resilience.shed.priority', opts.priority, 'normal', PRIORITIES)
}

const loadSheddingPlugin: FastifyPluginAsync<LoadSheddingOptions> = async (app, rawOptions) => {
  const read = new OptionReader(PLUGIN)
  const opts = read.object<LoadSheddingOptions>('options', rawOptions,
    ['maxConcurrent', 'limit', 'adaptive', 'priorityShares', 'retryAfterSeconds', 'maxEventLoopDelayMs', 'maxEventLoopUtilization', 'sampleIntervalMs', 'errorResponseBuilder'])
  const maxConcurrent = read.number('maxConcurrent', opts.maxConcurrent, 1000, { min: 1, integer: true })
  const mode = read.oneOf('limit', opts.limit, 'adaptive', ['static', 'adaptive'])
  if (mode === 'static' && opts.adaptive !== undefined) throw read.fail('adaptive', 'left out with limit: "static"', opts.adaptive)
  const adaptiveSettings = mode === 'adaptive' ? readAdaptiveOptions(read, opts.adaptive, maxConcurrent) : undefined
  const shares = read.object<Record<ShedPriority, number>>('priorityShares', opts.priorityShares, PRIORITIES)
  const share = {} as Record<ShedPriority, number>
  for (const priority of PRIORITIES) {
    share[priority] = read.number(`priorityShares.${priority}`, shares[priority], DEFAULT_SHARES[priority], { min: 0, max: 1 })
  }
  if (!(share.sheddable <= share.normal && share.normal <= share.critical)) {
    throw read.fail('priorityShares', 'ordered sheddable <= normal <= critical', opts.priorityShares)
  }
  let limit = maxConcurrent
  const threshold = {} as Record<ShedPriority, number>
  // Recomputed only when the limit moves, so admission stays a few comparisons.
  const setLimit = (newLimit: number): void => {
    limit = newLimit
    // At least one slot for any non-zero share, so that small limits still admit every priority.
    for (const priority of PRIORITIES) threshold[priority] = share[priority] === 0 ? 0 : Math.max(1, Math.floor(share[priority] * limit))
  }
  setLimit(maxConcurrent)
  const retryAfter = String(read.number('retryAfterSeconds', opts.retryAfterSeconds, 5, { min: 1, integer: true }))
  const maxDelayMs = opts.maxEventLoopDelayMs === undefined ? undefined : read.number('maxEventLoopDelayMs', opts.maxEventLoopDelayMs, 0, { min: 1 })
  const maxUtilization = opts.maxEventLoopUtilization === undefined ? undefined : read.number('maxEventLoopUtilization', opts.maxEventLoopUtilization, 0, { min: 0, max: 1 })
  const sampleIntervalMs = read.number('sampleIntervalMs', opts.sampleIntervalMs, 1000, { min: 10 })
  const buildError = read.function<NonNullable<LoadSheddingOptions['errorResponseBuilder']>>('errorResponseBuilder', opts.errorResponseBuilder)
  registerOnce(app, PLUGIN)

  const registry = useMetricsRegistry(app)
  const shedded = counter(registry, 'requests_shedded_total', {
    help: 'Requests refused by load shedding, by reason.',
    labelNames: ['reason']
  })
  let inFlight = 0
  let pressure: LoadShedding['pressure']
  const stopCollecting = collectedGauge(registry, 'requests_in_flight', { help: 'Requests being served now.' }, (gauge) => gauge.set(inFlight))
  const stopCollectingLimit = collectedGauge(registry, 'concurrency_limit', { help: 'Requests in flight at most now (the adaptive limit as learnt).' }, (gauge) => gauge.set(limit))

  // Sampled on an unref'd timer: the per-request cost is one comparison. The
  // delay is how late the sampling timer itself fires: a blocked loop delays it.
  let stopSampling = (): void => {}
  if (maxDelayMs !== undefined || maxUtilization !== undefined) {
    let lastTick = performance.now()
    let lastUtilization = performance.eventLoopUtilization()
    const timer = setInterval(() => {
      const now = performance.now()
      const delayMs = now - lastTick - sampleIntervalMs
      lastTick = now
      const utilizationNow = performance.eventLoopUtilization()
      const utilization = performance.eventLoopUtilization(utilizationNow, lastUtilization).utilization
      lastUtilization = utilizationNow
      pressure = maxDelayMs !== undefined && delayMs > maxDelayMs
        ? 'event_loop_delay'
        : maxUtilization !== undefined && utilization > maxUtilization ? 'event_loop_utilization' : undefined
    }, sampleIntervalMs)
    timer.unref()
    stopSampling = () => clearInterval(timer)
  }

  const admit = (priority: ShedPriority): ShedReason | undefined => {
    if (inFlight >= limit) return 'concurrency'
    if (inFlight >= threshold[priority]) return 'priority'
    if (pressure !== undefined && priority !== 'critical') return pressure
    return undefined
  }

  // Fastify's usual error body, built once: refusals must stay cheap under overload.
  const refusal = new OverloadedError()
  const refusalBody = JSON.stringify({ statusCode: 503, code: refusal.code, error: 'Service Unavailable', message: refusal.message })
  // One shared listener, called once per response by 'close': after the reply, or when the client went away.
  function release (this: ServerResponse): void {
    inFlight--
  }
  let listener = release
  const learning = adaptiveSettings !== undefined
  if (learning) {
    const adaptive = new AdaptiveLimit(adaptiveSettings, () => performance.now())
    const moves = new LimitMoves(Math.min(adaptiveSettings.maxLimit, Math.max(adaptiveSettings.minLimit, adaptiveSettings.initialLimit)), LIMIT_MOVE_PERIOD_MS, () => performance.now())
    setLimit(adaptive.limit)
    // Only complete, successful responses teach the limit: a failure is often
    // fast, and fast failures taken as capacity would collapse it.
    listener = function releaseAndLearn (this: ServerResponse): void {
      inFlight--
      const response = this as AdmittedResponse
      if (!adaptive.record(response[kAdmittedAtMs], response[kAdmittedInFlight], response.writableFinished && response.statusCode < 400)) return
      setLimit(adaptive.limit)
      // The probes' dips to minLimit are routine, not news.
      const move = adaptive.probing ? undefined : moves.observe(limit)
      if (move !== undefined) app.log.info({ concurrencyLimit: move.to, previousLimit: move.from, withinMs: Math.round(move.withinMs) }, `load shedding: the adaptive concurrency limit moved from ${move.from} to ${move.to}`)
    }
  }

  const shedRequest: onRequestHookHandler = (request, reply, done) => {
    const config = request.routeOptions.config as { [kPriority]?: RoutePriority }
    const priority = config[kPriority] ?? priorityOfEarlierRoute(config)
    if (priority === false) {
      done()
      return
    }
    const reason = admit(priority)
    if (reason !== undefined) {
      shedded.inc({ reason })
      reply.header('retry-after', retryAfter)
      if (buildError === undefined) reply.code(503).type('application/json; charset=utf-8').send(refusalBody)
      else done(buildError(request, { reason, retryAfterSeconds: Number(retryAfter) }))
      return
    }
    inFlight++
    if (learning) {
      const response = reply.raw as AdmittedResponse
      response[kAdmittedAtMs] = performance.now()
      response[kAdmittedInFlight] = inFlight
    }
    // 'close' comes once per response; `on` spares the wrapper `once` would allocate.
    reply.raw.on('close', listener)
    done()
  }
  app.addHook('onRequest', shedRequest)

  app.addHook('onRoute', (route) => {
    const label = routeLabel(route)
    const resilience = routeResilience(route.config, label)
    const priority = routePriority(new OptionReader(`${PLUGIN}: route "${label}"`), resilience?.shed)
    route.config = { ...route.config, [kPriority]: priority } as typeof route.config
  })

  app.decorate('loadShedding', {
    get inFlight () { return inFlight },
    get limit () { return limit },
    get pressure () { return pressure },
    isOverloaded: () => admit('normal') !== undefined
  } satisfies LoadShedding)

  app.addHook('onClose', async () => {
    stopSampling()
    stopCollecting()
    stopCollectingLimit()
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
