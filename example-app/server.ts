// Runs the players service: reads the environment, starts an embedded
// PostgreSQL (and a throwaway Redis when redis-server is installed) when no
// URL is given, listens, and shuts down gracefully on SIGINT/SIGTERM.
import type { Server } from 'node:http'
import type { Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { startPostgres, startRedis } from '../local-services/index.js'
import type { PostgresServer, RedisServer } from '../local-services/index.js'
import { findBinary } from '../local-services/process.js'
import { buildApp } from './app.js'
import { readConfig } from './env.js'

const DATA_DIR = fileURLToPath(new URL('../.data/postgres', import.meta.url))

/** What a shutdown needs to know about the server's connections. */
interface Connections {
  /** Open TCP connections. */
  readonly open: number
  /** Requests whose headers have arrived and whose response is not finished. */
  readonly requestsInFlight: number
  /** Destroys the connections on which not one byte has arrived; returns how many. */
  closeSilent: () => number
  /** Destroys every connection, whatever it carries. */
  destroyAll: () => void
}

// Node's closeIdleConnections() spares a connection that has not sent a
// request yet (it is not "idle" to Node), so one silent client would hold the
// drain open: the shutdown keeps its own list.
function trackConnections (server: Server): Connections {
  const sockets = new Set<Socket>()
  let requestsInFlight = 0
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  server.on('request', (_request, response) => {
    requestsInFlight++
    response.once('close', () => { requestsInFlight-- })
  })
  return {
    get open () { return sockets.size },
    get requestsInFlight () { return requestsInFlight },
    closeSilent () {
      let closed = 0
      // A socket that has read something carries a request, perhaps half-sent: in flight.
      for (const socket of sockets) {
        if (socket.bytesRead === 0) {
          socket.destroy()
          closed++
        }
      }
      return closed
    },
    destroyAll () {
      for (const socket of sockets) socket.destroy()
    }
  }
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

  const connections = trackConnections(app.server)
  let closing = false
  const shutdown = (signal: string): void => {
    if (closing) return
    closing = true
    const timeoutMs = config.shutdownTimeoutMs
    app.log.info({ signal, timeoutMs }, 'shutting down: draining requests')
    app.lifecycle.draining = true
    const silent = connections.closeSilent()
    if (silent > 0) app.log.info({ connections: silent }, `closed ${silent} connection(s) that carried no request`)
    // close() stops accepting, lets in-flight requests finish, then closes the pools.
    // The sweep closes keep-alive connections once their request is answered (they
    // would hold the server open until their keep-alive timeout) and silent ones
    // accepted before close() stopped accepting.
    const sweep = setInterval(() => {
      app.server.closeIdleConnections()
      connections.closeSilent()
    }, 100)
    let cut = false
    const deadline = setTimeout(() => {
      cut = true
      clearInterval(sweep)
      const { requestsInFlight, open } = connections
      app.log.warn({ timeoutMs, requestsInFlight, connections: open },
        `drain cut: ${requestsInFlight} request(s) still in flight and ${open} connection(s) open after ${timeoutMs} ms (SHUTDOWN_TIMEOUT_MS); closing them and exiting with 1`)
      connections.destroyAll()
      // A handler still waiting on PostgreSQL would keep its pool, and so app.close(), open.
      stopEmbedded().then(() => process.exit(1), () => process.exit(1))
    }, timeoutMs)
    app.close()
      .finally(() => {
        clearInterval(sweep)
        clearTimeout(deadline)
      })
      .then(stopEmbedded)
      .then(() => { if (!cut) process.exitCode = 0 }, (error: unknown) => {
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
