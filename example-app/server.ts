// Runs the players service: reads the environment, starts an embedded
// PostgreSQL (and a throwaway Redis when redis-server is installed) when no
// URL is given, listens, and shuts down gracefully on SIGINT/SIGTERM/SIGHUP. A
// start-up failure prints one line (what failed, what to do) and exits with 1.
import { constants as osConstants } from 'node:os'
import { buildApp } from './app.js'
import { DEMO_PLAYERS, seedPlayers } from './db/seed.js'
import { EmbeddedServices, StartupError, oneLine } from './embedded-services.js'
import { readConfig } from './env.js'
import { gracefulShutdown } from './shutdown.js'

/** The URL without its password, for messages. */
function redact (url: string): string {
  const parsed = new URL(url)
  if (parsed.password !== '') parsed.password = '***'
  return parsed.toString()
}

async function main (): Promise<void> {
  let config
  try {
    config = readConfig(process.env)
  } catch (error) {
    console.error(`Bad configuration: ${(error as Error).message}`)
    process.exitCode = 1
    return
  }

  const embedded = new EmbeddedServices()
  const fail = async (message: string): Promise<never> => {
    console.error(message)
    await embedded.stop()
    process.exit(1)
  }
  // Until the server listens, a signal stops what has started and ends the
  // process; then it starts the graceful shutdown. A repeated signal (a
  // terminal's Ctrl-C reaches npm, tsx and this process, and they relay it)
  // changes nothing: the drain is bounded by SHUTDOWN_TIMEOUT_MS.
  let startupStopping = false
  let onSignal = (signal: NodeJS.Signals): void => {
    if (startupStopping) return
    startupStopping = true
    console.error(`${signal} during start-up: stopping.`)
    embedded.stop().finally(() => process.exit(128 + osConstants.signals[signal]))
  }
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => onSignal(signal))

  let urls
  try {
    urls = await embedded.start(config)
  } catch (error) {
    return await fail(error instanceof StartupError ? error.message : `Cannot start the embedded services: ${oneLine(error)}`)
  }
  const { databaseUrl, redisUrl } = urls

  let app
  try {
    app = await buildApp({
      databaseUrl,
      redisUrl,
      redisPrefix: config.redisPrefix,
      adminToken: config.adminToken,
      maxConcurrent: config.maxConcurrent,
      sheddingLimit: config.sheddingLimit,
      breakerHalfOpenAfterMs: config.breakerHalfOpenAfterMs,
      logger: { level: config.logLevel }
    })
    // The embedded database is for development: it gets demo players. One named by DATABASE_URL never does.
    if (embedded.postgres !== undefined) {
      const seeded = await seedPlayers(app.pg.pool, DEMO_PLAYERS)
      if (seeded > 0) console.log(`Seeded the embedded PostgreSQL with ${seeded} demo players.`)
    }
  } catch (error) {
    return await fail(embedded.postgres === undefined
      ? `Cannot prepare the players database at ${redact(databaseUrl)}: ${oneLine(error)} (check that DATABASE_URL names a running PostgreSQL that lets this user create tables)`
      : `Cannot prepare the players database in the embedded PostgreSQL: ${oneLine(error)} (remove ${embedded.postgres.dataDir} to start from a fresh one)`)
  }

  const drain = gracefulShutdown(app, config.shutdownTimeoutMs)
  let closing = false
  const shutdown = (signal: string): void => {
    if (closing) return
    closing = true
    drain(signal).then(async (outcome) => {
      await embedded.stop()
      if (outcome === 'cut') process.exit(1)
      process.exitCode = 0
    }, async (error: unknown) => {
      console.error(error)
      await embedded.stop()
      process.exitCode = 1
    })
  }

  try {
    await app.listen({ port: config.port, host: config.host })
  } catch (error) {
    await app.close().catch(() => {})
    return await fail(`Cannot listen on ${config.host}:${config.port}: ${oneLine(error)} (${(error as NodeJS.ErrnoException).code === 'EADDRINUSE'
      ? 'the port is busy, perhaps with another npm start: stop that one, or set PORT to a free port'
      : 'set HOST and PORT to an address of this machine'})`)
  }
  onSignal = shutdown
  const address = app.server.address()
  const base = `http://${config.host}:${typeof address === 'object' && address !== null ? address.port : config.port}`
  console.log(`
Players service listening on ${base}
${embedded.describe(redisUrl).join('\n')}
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
  console.error(`Start-up failed: ${oneLine(error)}`)
  process.exit(1)
})
