import { mkdtempSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MissingBinaryError, ServerProcess, findBinary, freePort } from './process.js'

/** A throwaway Redis server on a loopback port, in its own temporary folder. */
export interface RedisServer {
  /** `redis://127.0.0.1:<port>` */
  url: string
  port: number
  process: ServerProcess
  stop: () => Promise<void>
}

/** One raw PING, so readiness does not depend on a client library's retry logic. */
async function answersPing (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    let reply = ''
    const done = (ok: boolean): void => { socket.destroy(); resolve(ok) }
    socket.setTimeout(2000, () => done(false))
    socket.on('error', () => done(false))
    socket.on('connect', () => socket.write('PING\r\n'))
    socket.on('data', (chunk) => {
      reply += chunk.toString()
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'))
    })
  })
}

/**
 * Starts a throwaway `redis-server` with persistence off on a free loopback
 * port, or on `port` (to restart a stopped server where its clients expect it).
 */
export async function startRedis (options: { port?: number } = {}): Promise<RedisServer> {
  const binary = findBinary('redis-server')
  if (binary === undefined) {
    throw new MissingBinaryError('redis-server', 'install Redis (Debian: apt-get install redis-server)')
  }
  const dir = mkdtempSync(join(tmpdir(), 'resilience-redis-'))
  const port = options.port ?? await freePort()
  const server = new ServerProcess('Redis', binary, [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
    '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--protected-mode', 'no'
  ], dir)
  try {
    await server.waitUntilReady(async () => await answersPing(port))
  } catch (error) {
    await server.stop('SIGKILL')
    throw error
  }
  return { url: `redis://127.0.0.1:${port}`, port, process: server, stop: async () => await server.stop('SIGTERM') }
}
