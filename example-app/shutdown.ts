// The drain of a shutdown: stop taking work, let the requests in flight
// finish, and cut them at a deadline, saying what was cut.
//
// Written by hand because neither ready-made way keeps all three promises.
// Fastify's forceCloseConnections: true destroys the requests in flight too;
// 'idle' (its default) relies on Node's closeIdleConnections(), which spares a
// connection that has not sent a request yet (to Node it is not idle), so one
// silent client holds the drain open until the deadline. close-with-grace
// gives a deadline and an exit code but knows nothing of connections, so it
// could neither close the silent ones nor say what it cut.
import type { Server } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'

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

/** How a shutdown ended: every request finished, or the deadline cut some. */
export type DrainOutcome = 'drained' | 'cut'

/**
 * Tracks the app's connections from now on (call it before `listen`) and
 * returns the shutdown: readiness turns 503, connections that carry no
 * request close at once, in-flight requests finish, then `app.close()` closes
 * the pools. Requests still running after `timeoutMs` have their connections
 * destroyed, with a warning that says how many were cut; `app.close()` is not
 * awaited then, since a handler stuck on PostgreSQL holds its pool open.
 */
export function gracefulShutdown (app: FastifyInstance, timeoutMs: number): (signal: string) => Promise<DrainOutcome> {
  const connections = trackConnections(app.server)
  return async (signal) => {
    app.log.info({ signal, timeoutMs }, 'shutting down: draining requests')
    app.lifecycle.draining = true
    const silent = connections.closeSilent()
    if (silent > 0) app.log.info({ connections: silent }, `closed ${silent} connection(s) that carried no request`)
    // close() stops accepting; the sweep closes keep-alive connections once
    // their request is answered (they would hold the server open until their
    // keep-alive timeout) and silent ones accepted before close() stopped accepting.
    const sweep = setInterval(() => {
      app.server.closeIdleConnections()
      connections.closeSilent()
    }, 100)
    let deadline: NodeJS.Timeout | undefined
    const cut = new Promise<DrainOutcome>((resolve) => {
      deadline = setTimeout(() => {
        const { requestsInFlight, open } = connections
        app.log.warn({ timeoutMs, requestsInFlight, connections: open },
          `drain cut: ${requestsInFlight} request(s) still in flight and ${open} connection(s) open after ${timeoutMs} ms (SHUTDOWN_TIMEOUT_MS); closing them and exiting with 1`)
        connections.destroyAll()
        resolve('cut')
      }, timeoutMs)
    })
    const drained = app.close().then(() => 'drained' as const)
    try {
      return await Promise.race([drained, cut])
    } finally {
      clearInterval(sweep)
      clearTimeout(deadline)
    }
  }
}
