/** The players service's configuration, read from the environment and validated at start. */
export interface ServerConfig {
  port: number
  host: string
  databaseUrl: string | undefined
  redisUrl: string | undefined
  /** Prefix of the service's Redis keys and flag channel. */
  redisPrefix: string
  adminToken: string | undefined
  maxConcurrent: number
  /** How load shedding sets its limit: learnt from latency, or `maxConcurrent`. */
  sheddingLimit: 'adaptive' | 'static'
  /** How long the database breaker stays open before it lets trial calls through. */
  breakerHalfOpenAfterMs: number
  logLevel: string
  /** How long a shutdown waits for in-flight requests before it closes what remains. */
  shutdownTimeoutMs: number
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']
const SHEDDING_LIMITS = ['adaptive', 'static'] as const

/** Reads the environment; a bad value throws an error that names the variable. */
export function readConfig (env: NodeJS.ProcessEnv): ServerConfig {
  const integer = (name: string, fallback: number, min: number, max: number): number => {
    const raw = env[name]
    if (raw === undefined || raw === '') return fallback
    const value = Number(raw)
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new Error(`${name} must be an integer from ${min} to ${max} (got ${JSON.stringify(raw)})`)
    }
    return value
  }
  const url = (name: string, protocols: string[]): string | undefined => {
    const raw = env[name]
    if (raw === undefined || raw === '') return undefined
    let protocol: string
    try {
      protocol = new URL(raw).protocol
    } catch {
      throw new Error(`${name} must be a URL such as ${protocols[0]}//host:port (got ${JSON.stringify(raw)})`)
    }
    if (!protocols.includes(protocol)) throw new Error(`${name} must start with ${protocols.join(' or ')} (got ${JSON.stringify(raw)})`)
    return raw
  }
  const adminToken = env.ADMIN_TOKEN === '' ? undefined : env.ADMIN_TOKEN
  if (adminToken !== undefined && !/^\S{16,}$/.test(adminToken)) {
    throw new Error('ADMIN_TOKEN must be at least 16 characters without spaces')
  }
  const logLevel = env.LOG_LEVEL ?? 'info'
  if (!LOG_LEVELS.includes(logLevel)) throw new Error(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')} (got ${JSON.stringify(logLevel)})`)
  const redisPrefix = env.REDIS_PREFIX === undefined || env.REDIS_PREFIX === '' ? 'players:' : env.REDIS_PREFIX
  if (!/^\S{1,64}$/.test(redisPrefix)) throw new Error(`REDIS_PREFIX must be 1 to 64 characters without spaces (got ${JSON.stringify(redisPrefix)})`)
  const sheddingLimit = env.SHEDDING_LIMIT === undefined || env.SHEDDING_LIMIT === '' ? 'adaptive' : env.SHEDDING_LIMIT
  if (!(SHEDDING_LIMITS as readonly string[]).includes(sheddingLimit)) {
    throw new Error(`SHEDDING_LIMIT must be one of ${SHEDDING_LIMITS.join(', ')} (got ${JSON.stringify(sheddingLimit)})`)
  }
  return {
    port: integer('PORT', 3000, 0, 65535),
    host: env.HOST === undefined || env.HOST === '' ? '127.0.0.1' : env.HOST,
    databaseUrl: url('DATABASE_URL', ['postgres:', 'postgresql:']),
    redisUrl: url('REDIS_URL', ['redis:', 'rediss:']),
    redisPrefix,
    adminToken,
    maxConcurrent: integer('MAX_CONCURRENT', 1000, 1, 1_000_000),
    sheddingLimit: sheddingLimit as ServerConfig['sheddingLimit'],
    breakerHalfOpenAfterMs: integer('BREAKER_HALF_OPEN_AFTER_MS', 30_000, 1, 3_600_000),
    logLevel,
    shutdownTimeoutMs: integer('SHUTDOWN_TIMEOUT_MS', 10_000, 1, 3_600_000)
  }
}
