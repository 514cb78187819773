// Runs the players service: reads the environment, starts an embedded
// PostgreSQL (and a throwaway Redis when redis-server is installed) when no
// URL is given, listens, and shuts down gracefully on SIGINT/SIGTERM.
import { fileURLToPath } from 'node:url'
import { startPostgres, startRedis } from '../local-services/index.js'
import type { PostgresServer, RedisServer } from '../local-services/index.js'
import { findBinary } from '../local-services/process.js'
import { buildApp } from './app.js'
import { readConfig } from './env.js'

const DATA_DIR = fileURLToPath(new URL('../.data/postgres', import.meta.url))

async function main (): Promise<void> {
  let config
  try {
    config = readConfig(process.env)
  } catch (error) {
    console.error(`Bad configuration: ${(error as Error).message}`)
    process.exitCode = 1
    return
  }

  let embeddedPostgres: PostgresServer | undefined
  let embeddedRedis: RedisServer | undefined
  const stopEmbedded = async (): Promise<void> => {
    await Promise.allSettled([embeddedPostgres?.stop(), embeddedRedis?.stop()])
  }

  let databaseUrl = config.databaseUrl
  if (databaseUrl === undefined) {
    console.log(`No DATABASE_URL: starting an embedded PostgreSQL with its data in ${DATA_DIR} ...`)
    embeddedPostgres = await startPostgres({ dir: DATA_DIR })
    databaseUrl = embeddedPostgres.url
  }
  let redisUrl = config.redisUrl
  if (redisUrl === undefined) {
    if (findBinary('redis-server') !== undefined) {
      embeddedRedis = await startRedis()
      redisUrl = embeddedRedis.url
    } else {
      console.log('No REDIS_URL and no redis-server installed: running with the cache tier down.')
    }
  }

  const app = await buildApp({
    databaseUrl,
    redisUrl,
    adminToken: config.adminToken,
    maxConcurrent: config.maxConcurrent,
    logger: { level: config.logLevel }
  })

  let closing = false
  const shutdown = (signal: string): void => {
    if (closing) return
    closing = true
    app.log.info({ signal }, 'shutting down: draining requests')
    app.lifecycle.draining = true
    // close() stops accepting, lets in-flight requests finish, then closes the pools.
    // Keep-alive connections that turn idle once their request is answered would
    // otherwise hold the server open until their keep-alive timeout.
    const sweep = setInterval(() => app.server.closeIdleConnections(), 100)
    app.close()
      .finally(() => clearInterval(sweep))
      .then(stopEmbedded)
      .then(() => { process.exitCode = 0 }, (error: unknown) => {
        console.error(error)
        process.exitCode = 1
      })
  }
  process.once('SIGINT', () => shutdown('SIGINT'))
  process.once('SIGTERM', () => shutdown('SIGTERM'))

  try {
    await app.listen({ port: config.port, host: config.host })
  } catch (error) {
    console.error(`Cannot listen on ${config.host}:${config.port}: ${(error as Error).message}`)
    await app.close()
    await stopEmbedded()
    process.exitCode = 1
    return
  }
  const address = app.server.address()
  const base = `http://${config.host}:${typeof address === 'object' && address !== null ? address.port : config.port}`
  console.log(`
Players service listening on ${base}
  PostgreSQL: ${embeddedPostgres === undefined ? 'DATABASE_URL' : `embedded (${embeddedPostgres.url})`}
  Redis:      ${embeddedRedis !== undefined ? `throwaway (${embeddedRedis.url})` : redisUrl !== undefined ? 'REDIS_URL' : 'none (cache tier down)'}
Try:
  curl -i ${base}/players/1
  curl -i '${base}/leaderboard?limit=5'
  curl -i -X PUT ${base}/players/1/score -H 'content-type: application/json' -d '{"score": 4242}'
  curl -i ${base}/health/ready
  curl ${base}/metrics${config.adminToken === undefined
    ? ''
    : `
  curl -i -X PUT ${base}/admin/flags/player_lookup -H "authorization: Bearer $ADMIN_TOKEN" -H 'content-type: application/json' -d '{"enabled": false}'`}
Ctrl-C stops it gracefully.`)
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
