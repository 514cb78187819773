import { mkdirSync, mkdtempSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MissingBinaryError, ServerProcess, findBinary, freePort, retryIfPortTaken } from './process.js'

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

/** A RESP2 reply: status and bulk strings, integers, arrays, null; an error reply is an Error. */
export type RespReply = string | number | null | Error | RespReply[]

/**
 * Parses one RESP2 reply at `offset` of `text`: the reply and where it ends,
 * or undefined while the reply is incomplete. `text` is the bytes read as
 * latin1 (one character a byte), since RESP lengths count bytes.
 */
function parseReply (text: string, offset = 0): { reply: RespReply, end: number } | undefined {
  const lineEnd = text.indexOf('\r\n', offset)
  if (lineEnd === -1) return undefined
  const line = text.slice(offset + 1, lineEnd)
  const next = lineEnd + 2
  switch (text[offset]) {
    case '+': return { reply: line, end: next }
    case '-': return { reply: new Error(line), end: next }
    case ':': return { reply: Number(line), end: next }
    case '$': {
      const length = Number(line)
      if (length < 0) return { reply: null, end: next }
      if (text.length < next + length + 2) return undefined
      return { reply: text.slice(next, next + length), end: next + length + 2 }
    }
    case '*': {
      const count = Number(line)
      if (count < 0) return { reply: null, end: next }
      const items: RespReply[] = []
      let end = next
      for (let i = 0; i < count; i++) {
        const item = parseReply(text, end)
        if (item === undefined) return undefined
        items.push(item.reply)
        end = item.end
      }
      return { reply: items, end }
    }
    default: throw new Error(`not a RESP reply: ${JSON.stringify(text.slice(offset, offset + 40))}`)
  }
}

/**
 * Sends one command to the Redis on the loopback `port` over a connection of
 * its own and resolves with the reply (an error reply resolves as an Error);
 * rejects when the server cannot be reached or does not answer within
 * `timeoutMs`. For the servers' own set-up and checks, without a client library.
 */
export async function redisCommand (port: number, args: string[], timeoutMs = 5000): Promise<RespReply> {
  return await new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let text = ''
    socket.setTimeout(timeoutMs, () => { socket.destroy(); reject(new Error(`Redis on port ${port} did not answer ${args[0] ?? ''} within ${timeoutMs} ms`)) })
    socket.on('error', (error) => { socket.destroy(); reject(error) })
    socket.on('close', () => reject(new Error(`Redis on port ${port} closed the connection before answering ${args[0] ?? ''}`)))
    socket.on('connect', () => {
      socket.write(`*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`)
    })
    socket.on('data', (chunk) => {
      text += chunk.toString('latin1')
      try {
        const parsed = parseReply(text)
        if (parsed === undefined) return
        resolve(parsed.reply)
      } catch (error) {
        reject(error)
      }
      socket.destroy()
    })
  })
}

/** What `startRedis` can be told. */
export interface StartRedisOptions {
  /** Listen here instead of on a free port (to restart a stopped server where its clients expect it). */
  port?: number
  /**
   * The server's folder (`--dir`), created if missing and kept when the server
   * stops (to restart a cluster node with its nodes.conf): its owner removes it.
   * By default a new temporary folder, removed when the server stops.
   */
  dir?: string
  /** More `redis-server` arguments (`--cluster-enabled yes`, ...), after the default ones. */
  args?: string[]
}

/**
 * Starts a throwaway `redis-server` with persistence off on a free loopback
 * port, or on `port` (to restart a stopped server where its clients expect it).
 */
export async function startRedis (options: StartRedisOptions = {}): Promise<RedisServer> {
  // A port of our own choosing may be taken before Redis binds it: choose again.
  return options.port === undefined ? await retryIfPortTaken(async () => await startRedisOnce(options)) : await startRedisOnce(options)
}

async function startRedisOnce (options: StartRedisOptions): Promise<RedisServer> {
  const binary = findBinary('redis-server')
  if (binary === undefined) {
    throw new MissingBinaryError('redis-server', 'install Redis (Debian: apt-get install redis-server)')
  }
  const keepDir = options.dir !== undefined
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'resilience-redis-'))
  if (keepDir) mkdirSync(dir, { recursive: true })
  const port = options.port ?? await freePort()
  const server = new ServerProcess('Redis', binary, [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
    '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--protected-mode', 'no',
    ...options.args ?? []
  ], dir, { keepDir })
  try {
    await server.waitUntilReady(async () => await answersPing(port))
  } catch (error) {
    await server.stop('SIGKILL')
    throw error
  }
  return { url: `redis://127.0.0.1:${port}`, port, process: server, stop: async () => await server.stop('SIGTERM') }
}
