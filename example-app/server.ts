// Runs the players service: reads the environment, starts an embedded
// PostgreSQL (and a throwaway Redis when redis-server is installed) when no
// URL is given, listens, and shuts down gracefully on SIGINT/SIGTERM/SIGHUP. A
// start-up failure prints one line (what failed, what to do) and exits with 1.
import type { Server } from 'node:http'
import type { Socket } from 'node:net'
import { constants as osConstants } from 'node:os'
import { buildApp } from './app.js'
import { EmbeddedServices, StartupError, oneLine } from './embedded-services.js'
import { readConfig } from './env.js'

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
      adminToken: config.adminToken,
      maxConcurrent: config.maxConcurrent,
      logger: { level: config.logLevel }
    })
  } catch (error) {
    return await fail(embedded.postgres === undefined
      ? `Cannot prepare the players database at ${redact(databaseUrl)}: ${oneLine(error)} (check that DATABASE_URL names a running PostgreSQL that lets this user create tables)`
      : `Cannot prepare the players database in the embedded PostgreSQL: ${oneLine(error)} (remove ${embedded.postgres.dataDir} to start from a fresh one)`)
  }

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
      embedded.stop().then(() => process.exit(1), () => process.exit(1))
    }, timeoutMs)
    app.close()
      .finally(() => {
        clearInterval(sweep)
        clearTimeout(deadline)
      })
      .then(async () => await embedded.stop())
      .then(() => { if (!cut) process.exitCode = 0 }, (error: unknown) => {
        console.error(error)
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
