/**
 * Policy cost: ops/s of our breaker, retry and a route's
 * whole pipeline around an already-resolved async function, against raw
 * cockatiel (including `wrap(retry, breaker, timeout)`) and opossum 9.
 * mitata measures each candidate; rounds interleave the candidates and the
 * tables quote medians of the rounds and ratios taken within each round.
 *
 * Alone: `npm run bench -- --only=policy` (add `--smoke` for a quick check).
 */
import Fastify from 'fastify'
import type { FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify'
import { ExponentialBackoff, SamplingBreaker, TimeoutStrategy, circuitBreaker, handleAll, retry, timeout, wrap } from 'cockatiel'
import CircuitBreaker from 'opossum'
import { measure } from 'mitata'
import { Redis } from 'ioredis'
import { breaker, resilience } from 'fastify-resilience'
import { startRedis, startRedisCluster } from '../local-services/index.js'
import type { BenchOptions, Section } from './lib/report.js'
import { table, verdict } from './lib/report.js'
import { fixed, integer, median, rotate, spread } from './lib/stats.js'
import { barChart } from './lib/svg.js'
import { trialLatency } from './lib/trial-latency.js'
import type { TrialBackend, TrialLatency } from './lib/trial-latency.js'

const resolved = async (): Promise<string> => 'ok'

interface Candidate {
  name: string
  run: () => Promise<unknown>
}

interface Group {
  title: string
  /** The candidate the others are divided by. */
  baseline: string
  candidates: Candidate[]
}

/** A route's handler as Fastify will call it, captured after route-policy wrapped it. */
async function routeHandler (): Promise<{ handler: RouteHandlerMethod, close: () => Promise<void> }> {
  const app = Fastify()
  await app.register(resilience, { metrics: false, loadShedding: false, flags: false, fallback: false })
  let handler: RouteHandlerMethod | undefined
  app.addHook('onRoute', (route) => {
    if (route.url === '/pipeline') handler = route.handler as RouteHandlerMethod
  })
  app.get('/pipeline', { config: { resilience: { timeoutMs: 2000, breaker: 'pipeline', retry: { maxRetries: 2 } } } }, resolved)
  await app.ready()
  if (handler === undefined) throw new Error('the /pipeline route was not seen')
  return { handler, close: async () => await app.close() }
}

/**
 * Stand-ins for what Fastify passes a handler: a fresh request per call (the
 * pipeline keeps per-request state on it) and a reply that has not been sent.
 */
function callRoute (handler: RouteHandlerMethod, instance: unknown): Promise<unknown> {
  const response = { destroyed: false, writableEnded: false, once () { return response } }
  const request = { method: 'GET' } as unknown as FastifyRequest
  const reply = { sent: false, raw: response, code () { return reply } } as unknown as FastifyReply
  return handler.call(instance as never, request, reply) as Promise<unknown>
}

/** A Redis for the fleet-wide breaker: the one named by the environment, else a throwaway one. */
async function redis (smoke: boolean, log: (line: string) => void): Promise<{ url: string, stop: () => Promise<void> }> {
  const variable = smoke ? 'RESILIENCE_TEST_REDIS_URL' : 'RESILIENCE_BENCH_REDIS_URL'
  const url = process.env[variable]
  if (url !== undefined && url !== '') {
    log(`policy: Redis from ${variable}`)
    return { url, stop: async () => {} }
  }
  log('policy: starting a throwaway Redis')
  return await startRedis()
}

/** A Redis Cluster for the trial latency: the tests' in smoke mode, else a throwaway one of 3 masters. */
async function cluster (smoke: boolean, log: (line: string) => void): Promise<{ nodes: Array<{ host: string, port: number }>, stop: () => Promise<void> }> {
  const given = smoke ? process.env.RESILIENCE_TEST_REDIS_CLUSTER_NODES : undefined
  if (given !== undefined && given !== '') {
    log('policy: Redis Cluster from RESILIENCE_TEST_REDIS_CLUSTER_NODES')
    return { nodes: given.split(',').map((node) => ({ host: node.split(':')[0] as string, port: Number(node.split(':')[1]) })), stop: async () => {} }
  }
  log('policy: starting a throwaway 3-master Redis Cluster')
  return await startRedisCluster()
}

/** An app whose breakers are fleet-wide through Redis at `url` (keys of this run only). */
async function sharedBreakerApp (url: string): Promise<{ app: ReturnType<typeof Fastify>, close: () => Promise<void> }> {
  const client = new Redis(url)
  const app = Fastify()
  await app.register(breaker, { shared: { redis: { client, prefix: `bench-${process.pid}:`, channel: `bench-${process.pid}` } } })
  await app.ready()
  return {
    app,
    close: async () => {
      await app.close()
      client.disconnect()
    }
  }
}

async function groups (redisUrl: string): Promise<{ groups: Group[], close: () => Promise<void> }> {
  const app = Fastify()
  await app.register(resilience, { metrics: false, loadShedding: false, flags: false, fallback: false, retry: { maxRetries: 2 } })
  await app.ready()
  const ours = app.breaker('bench')
  const oursWithTimeout = app.breaker('bench-timeout', { timeoutMs: 2000 })
  const route = await routeHandler()
  const fleet = await sharedBreakerApp(redisUrl)
  const shared = fleet.app.breaker('bench')
  // A new fleet-wide breaker follows the fleet once its state was read (a round trip).
  for (let tries = 0; shared.toJSON().shared !== 'synced'; tries++) {
    if (tries === 100) throw new Error('policy: the fleet-wide breaker is not synced with Redis')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }

  const cockatielBreaker = circuitBreaker(handleAll, { halfOpenAfter: 30_000, breaker: new SamplingBreaker({ threshold: 0.6, duration: 10_000 }) })
  const cockatielRetry = retry(handleAll, { maxAttempts: 2, backoff: new ExponentialBackoff() })
  const cockatielPipeline = wrap(
    retry(handleAll, { maxAttempts: 2, backoff: new ExponentialBackoff() }),
    circuitBreaker(handleAll, { halfOpenAfter: 30_000, breaker: new SamplingBreaker({ threshold: 0.6, duration: 10_000 }) }),
    timeout(2000, TimeoutStrategy.Aggressive)
  )
  const cockatielNoTimeout = wrap(
    retry(handleAll, { maxAttempts: 2, backoff: new ExponentialBackoff() }),
    circuitBreaker(handleAll, { halfOpenAfter: 30_000, breaker: new SamplingBreaker({ threshold: 0.6, duration: 10_000 }) })
  )
  const opossum = new CircuitBreaker(resolved, { timeout: false, errorThresholdPercentage: 60, resetTimeout: 30_000 })
  const opossumTimeout = new CircuitBreaker(resolved, { timeout: 2000, errorThresholdPercentage: 60, resetTimeout: 30_000 })
  const signal = new AbortController().signal

  return {
    groups: [
      {
        title: 'Breaker',
        baseline: 'cockatiel circuitBreaker',
        candidates: [
          { name: 'cockatiel circuitBreaker', run: async () => await cockatielBreaker.execute(resolved) },
          { name: 'app.breaker().execute', run: async () => await ours.execute(resolved) },
          { name: 'app.breaker().execute, fleet-wide (closed)', run: async () => await shared.execute(resolved) },
          { name: 'opossum fire()', run: async () => await opossum.fire() }
        ]
      },
      {
        title: 'Retry',
        baseline: 'cockatiel retry',
        candidates: [
          { name: 'cockatiel retry', run: async () => await cockatielRetry.execute(resolved) },
          { name: 'app.retry(fn)', run: async () => await app.retry(resolved) },
          { name: 'app.retry(fn, { maxRetries, signal })', run: async () => await app.retry(resolved, { maxRetries: 2, signal }) }
        ]
      },
      {
        title: 'Pipeline: retry + breaker + timeout',
        baseline: 'cockatiel wrap(retry, breaker, timeout)',
        candidates: [
          { name: 'cockatiel wrap(retry, breaker, timeout)', run: async () => await cockatielPipeline.execute(resolved) },
          { name: 'cockatiel wrap(retry, breaker)', run: async () => await cockatielNoTimeout.execute(resolved) },
          { name: 'route pipeline (retry, breaker, timeoutMs)', run: async () => await callRoute(route.handler, app) },
          { name: 'app.breaker({ timeoutMs }).execute', run: async () => await oursWithTimeout.execute(resolved) },
          { name: 'app.retry(() => breaker with timeoutMs)', run: async () => await app.retry(async () => await oursWithTimeout.execute(resolved)) },
          { name: 'opossum fire() with timeout', run: async () => await opossumTimeout.fire() }
        ]
      }
    ],
    close: async () => {
      opossum.shutdown()
      opossumTimeout.shutdown()
      await route.close()
      await fleet.close()
      await app.close()
    }
  }
}

/** Operations per second of `run`, measured by mitata for about `cpuMs`. */
async function opsPerSecond (run: () => Promise<unknown>, cpuMs: number): Promise<number> {
  const stats = await measure(run, { min_cpu_time: cpuMs * 1e6, warmup_samples: 2, min_samples: 8 })
  return 1e9 / stats.avg
}

/** Runs the policy benchmark and renders its section of RESULTS.md. */
export async function policy (options: BenchOptions): Promise<Section> {
  const rounds = options.smoke ? 1 : 7
  const cpuMs = options.smoke ? 20 : 400
  const redisServer = await redis(options.smoke, options.log)
  const { groups: all, close } = await groups(redisServer.url).catch(async (error: unknown) => {
    await redisServer.stop()
    throw error
  })
  const samples = new Map<string, number[]>()
  const ratios = new Map<string, number[]>()
  try {
    for (let round = 0; round < rounds; round++) {
      for (const group of all) {
        const measured = new Map<string, number>()
        for (const candidate of rotate(group.candidates, round)) {
          measured.set(candidate.name, await opsPerSecond(candidate.run, cpuMs))
        }
        const base = measured.get(group.baseline) as number
        for (const [name, ops] of measured) {
          samples.set(name, [...(samples.get(name) ?? []), ops])
          ratios.set(name, [...(ratios.get(name) ?? []), ops / base])
        }
      }
      options.log(`policy: round ${round + 1}/${rounds} done`)
    }
  } finally {
    await close()
    await redisServer.stop()
  }
  const trialSamples = options.smoke ? 50 : 5000
  const trials: Array<{ name: string, latency: TrialLatency }> = []
  const singleRedis = await redis(options.smoke, options.log)
  try {
    trials.push({ name: 'one Redis', latency: await trialLatency({ kind: 'redis', url: singleRedis.url }, trialSamples) })
  } finally {
    await singleRedis.stop()
  }
  const clusterServers = await cluster(options.smoke, options.log)
  try {
    const backend: TrialBackend = { kind: 'cluster', nodes: clusterServers.nodes }
    trials.push({ name: 'Redis Cluster, 3 masters', latency: await trialLatency(backend, trialSamples) })
  } finally {
    await clusterServers.stop()
  }
  options.log(`policy: trial grants measured (${trials.map(({ name, latency }) => `${name} p99 ${fixed(latency.p99Ms, 3)} ms`).join(', ')})`)

  const opsOf = (name: string): number => median(samples.get(name) ?? [])
  const ratioOf = (name: string): number => median(ratios.get(name) ?? [])
  const tables = all.map((group) => [
    `### ${group.title}`,
    '',
    table(['candidate', 'ops/s (median)', 'spread of rounds', `vs ${group.baseline}`], group.candidates.map((candidate) => [
      candidate.name,
      integer(opsOf(candidate.name)),
      spread(samples.get(candidate.name) ?? [], integer),
      `${fixed(ratioOf(candidate.name))}x`
    ]))
  ].join('\n'))

  const breakerRatio = ratioOf('app.breaker().execute')
  // The fleet-wide breaker's time per call over the local one's (both against the same baseline in each round).
  const sharedSlowdown = breakerRatio / ratioOf('app.breaker().execute, fleet-wide (closed)')
  const retryRatio = ratioOf('app.retry(fn)')
  const pipelineRatio = ratioOf('route pipeline (retry, breaker, timeoutMs)')
  const retryOptionsRatio = ratioOf('app.retry(fn, { maxRetries, signal })')
  // The breaker's time per call over the route pipeline's (both measured against the same baseline in each round).
  const breakerTimeoutSlowdown = pipelineRatio / ratioOf('app.breaker({ timeoutMs }).execute')
  // "Within 1.2x": at most 1.2 times raw cockatiel's time per call.
  const slowdown = (ratio: number): string => `${fixed(1 / ratio, 3)}x its time per call (${fixed(ratio, 3)}x its ops/s)`
  const targets = [
    `- Breaker within 1.2x of raw cockatiel: ${slowdown(breakerRatio)}, ${verdict(1 / breakerRatio <= 1.2)}.`,
    `- Retry within 1.2x of raw cockatiel: ${slowdown(retryRatio)}, ${verdict(1 / retryRatio <= 1.2)}.`,
    `- Route pipeline with a timeout at least 10x faster than cockatiel's \`wrap(retry, breaker, timeout)\`: ${fixed(pipelineRatio)}x, ${verdict(pipelineRatio >= 10)}.`,
    `- Retry with per-call options within 2x of raw cockatiel retry: ${slowdown(retryOptionsRatio)}, ${verdict(1 / retryOptionsRatio <= 2)}.`,
    `- Fleet-wide breaker, closed, within 1.3x of the local breaker's time per call: ${fixed(sharedSlowdown, 3)}x, ${verdict(sharedSlowdown <= 1.3)}.`,
    `- Breaker with \`timeoutMs\` within 2x of the route pipeline's time per call: ${fixed(breakerTimeoutSlowdown, 3)}x, ${verdict(breakerTimeoutSlowdown <= 2)}.`
  ]
  const chart = barChart('Policy cost around a resolved async function', 'ops/s, median of rounds', all.map((group) => ({
    title: group.title,
    bars: group.candidates.map((candidate) => ({ label: candidate.name, value: opsOf(candidate.name), note: integer(opsOf(candidate.name)) }))
  })))
  const markdown = [
    `Each candidate runs an \`async () => 'ok'\` function through the policy, awaited one call at a time. mitata measures each candidate for about ${cpuMs} ms of CPU per round; ${rounds} rounds interleave the candidates (the order rotates each round). Ops/s are medians of the rounds; ratios are taken within each round, then the median is quoted.`,
    '',
    'Configurations: cockatiel 4 `circuitBreaker` with a `SamplingBreaker` (60 %, 10 s: the closest to our windowed ratio) and `retry` with 2 attempts and exponential backoff; `timeout(2000, Aggressive)`. Ours: the `resilience` plugin (breaker, retry with `maxRetries: 2`, metrics off). The route pipeline is the handler Fastify calls for a route with `timeoutMs: 2000, breaker, retry: { maxRetries: 2 }`, captured with an `onRoute` hook and called with minimal request/reply stand-ins. opossum 9 has no retry; its breaker appears with and without its timeout. The fleet-wide breaker is the same breaker with the plugin\'s `shared` option on a local Redis (its closed path reads only the state held in memory; successes are sent to Redis in batches every 100 ms, in the background).',
    '',
    ...tables.flatMap((block) => [block, '']),
    '### Half-open: a trial granted by the fleet',
    '',
    `A fleet-wide breaker held half-open (one instance, \`halfOpenMaxCalls\` of a million) runs ${trialSamples} calls one after the other; each waits for Redis to grant its trial (one script call by SHA, on the loopback), then settles it in the background. Time per call, from \`execute\` to its result:`,
    '',
    table(['where the fleet is kept', 'calls', 'p50 (ms)', 'p99 (ms)'], trials.map(({ name, latency }) => [name, String(latency.samples), fixed(latency.p50Ms, 3), fixed(latency.p99Ms, 3)])),
    '',
    '**Targets**',
    '',
    ...targets,
    '',
    ...(1 / breakerRatio <= 1.2 && 1 / retryRatio <= 1.2 && pipelineRatio >= 10 && 1 / retryOptionsRatio <= 2 && breakerTimeoutSlowdown <= 2 && sharedSlowdown <= 1.3
      ? []
      : ['**Where a target is missed**: the changes made to the hot path are listed under *What was tried* in the overhead section. What remains on top of raw cockatiel is bookkeeping done on every call: for the breaker, the state check (refusals are decided before cockatiel, to answer with `Retry-After`) and the call count; for retry, the retry budget (a clock read per call), the per-operation lookups and the histogram tally; for the pipeline, the per-request signals holder, the deadline and the async steps between the policies.', '']),
    '![Policy cost chart](policy.svg)'
  ].join('\n')
  return {
    title: 'Policy cost',
    command: 'npm run bench -- --only=policy',
    markdown,
    charts: { 'policy.svg': chart },
    headlines: [
      `policy: fleet-wide breaker (closed) ${fixed(sharedSlowdown, 2)}x the local breaker's time per call; a half-open trial's p99 ${trials.map(({ name, latency }) => `${fixed(latency.p99Ms, 2)} ms on ${name}`).join(', ')}`,
      `policy: breaker ${fixed(breakerRatio)}x and retry ${fixed(retryRatio)}x of raw cockatiel's ops/s; route pipeline with a timeout ${fixed(pipelineRatio)}x cockatiel's wrap(retry, breaker, timeout)`
    ]
  }
}
