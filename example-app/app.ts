import fastifyPostgres from '@fastify/postgres'
import fastifyRedis from '@fastify/redis'
import Fastify from 'fastify'
import fastifyMetrics from 'fastify-metrics'
import { Redis } from 'ioredis'
import promClient from 'prom-client'
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import resilience from 'fastify-resilience'
import { redisCache } from './cache.js'
import { safeErrorHandler } from './errors.js'
import { migrate } from './db/migrate.js'
import { healthRoutes } from './routes/health.js'
import type { Lifecycle } from './routes/health.js'
import { leaderboardRoutes } from './routes/leaderboard.js'
import { playerRoutes } from './routes/players.js'

/** The service's settings; `server.ts` reads each from the environment (see env.ts). */
export interface AppOptions {
  /** PostgreSQL connection string (`DATABASE_URL`). */
  databaseUrl: string
  /** Redis URL (`REDIS_URL`); without it the cache tier is reported down. */
  redisUrl?: string
  /**
   * Prefix of this service's Redis keys and flag channel (`REDIS_PREFIX`), so
   * that services or environments can share one Redis.
   * @default 'players:'
   */
  redisPrefix?: string
  /** Enables the flag admin API (`ADMIN_TOKEN`; `/metrics` stays open). */
  adminToken?: string
  /**
   * Ceiling of the load shedding limit, or the limit itself when
   * `sheddingLimit` is `'static'` (`MAX_CONCURRENT`).
   * @default 1000
   */
  maxConcurrent?: number
  /**
   * How load shedding sets its limit: learnt from latency, or fixed at
   * `maxConcurrent` (`SHEDDING_LIMIT`).
   * @default 'adaptive'
   */
  sheddingLimit?: 'static' | 'adaptive'
  /**
   * How long the database breaker stays open before it lets trial calls
   * through (`BREAKER_HALF_OPEN_AFTER_MS`).
   * @default 30000
   */
  breakerHalfOpenAfterMs?: number
  logger?: FastifyServerOptions['logger']
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Shutdown state of the players service. */
    lifecycle: Lifecycle
  }
}

/** Builds the players service: PostgreSQL, Redis, the whole resilience suite and the routes. */
export async function buildApp (options: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger ?? false,
    // No type coercion: {"score": true}, [3] or null must be refused, not
    // written as 1, 3 or 0. Numbers in paths and query strings are therefore
    // strings with a pattern (see routes/).
    ajv: { customOptions: { coerceTypes: false } }
  })
  app.setErrorHandler(safeErrorHandler)
  const lifecycle: Lifecycle = { draining: false }
  app.decorate('lifecycle', lifecycle)
  const prefix = options.redisPrefix ?? 'players:'

  await app.register(fastifyPostgres, { connectionString: options.databaseUrl, max: 10, connectionTimeoutMillis: 2000 })
  // An idle connection that dies (server restart) is reported here; the pool replaces it.
  app.pg.pool.on('error', (error) => app.log.warn({ err: error }, 'idle PostgreSQL connection lost'))
  if (options.redisUrl !== undefined) {
    const redis = new Redis(options.redisUrl, {
      // Fail fast on a dead Redis instead of queueing commands until it returns.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 1000,
      commandTimeout: 500
    })
    redis.on('error', (error) => app.log.debug({ err: error }, 'Redis connection error'))
    // Our own client, dropped (not QUIT) on close, so a frozen Redis cannot hold up shutdown.
    await app.register(fastifyRedis, { client: redis, closeClient: false })
    app.addHook('onClose', async () => { redis.disconnect() })
  }

  // One registry for the suite and the HTTP metrics, so /metrics serves both.
  const registry = new promClient.Registry()
  // Registered before the suite: its onRequest hook must run before load
  // shedding's, so that refused requests are counted as the 503s they are.
  await app.register(fastifyMetrics.default, {
    endpoint: null,
    promClient,
    defaultMetrics: { enabled: false },
    routeMetrics: {
      enabled: { histogram: true, summary: false },
      // Unmatched URLs share one `route` label value; scrapes are not traffic.
      registeredRoutesOnly: false,
      routeBlacklist: ['/metrics'],
      overrides: {
        // http_request_duration_seconds{method,route,status_code}; `route` is the pattern, never the URL.
        histogram: { registers: [registry] },
        summary: { registers: [] }
      }
    }
  })

  await app.register(resilience, {
    metrics: { registry, defaultMetrics: true },
    loadShedding: { maxConcurrent: options.maxConcurrent ?? 1000, limit: options.sheddingLimit ?? 'adaptive' },
    flags: {
      defaults: { player_lookup: true, leaderboard: true },
      ...(options.redisUrl === undefined ? {} : { redis: { key: `${prefix}flags`, channel: `${prefix}flags` } }),
      ...(options.adminToken === undefined ? {} : { admin: { token: options.adminToken } })
    },
    breaker: { defaults: { timeoutMs: 2000, halfOpenAfterMs: options.breakerHalfOpenAfterMs ?? 30_000 } },
    retry: { maxRetries: 2 }
  })
  // Made now, so that /metrics and /health/ready list it before the first query.
  app.breaker('database')

  const cache = redisCache(options.redisUrl === undefined ? undefined : app.redis, prefix)
  await app.register(playerRoutes, { cache })
  await app.register(leaderboardRoutes, { cache })
  await app.register(healthRoutes, { cache, lifecycle })

  // The schema only: demo players are the embedded development database's
  // (server.ts) or an explicit script's (db/seed.ts), never a real database's.
  await migrate(app.pg.pool)
  return app
}
