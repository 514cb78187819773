/**
 * Benchmark servers run in a process of their own, so the load generator never
 * shares their event loop. The parent starts one with {@link startBenchServer};
 * the child script calls {@link serveBenchApp}. They talk over Node's IPC
 * channel: the child reports its port, and reports its CPU time on request.
 */
import { execFileSync, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'

/** CPU time the server process has used so far, in microseconds. */
export interface CpuTime {
  user: number
  system: number
}

type ChildMessage = { type: 'listening', port: number } | { type: 'cpu', cpu: CpuTime } | { type: 'failed', message: string }
type ParentMessage = { type: 'cpu' } | { type: 'close' }

export interface BenchServer {
  /** `http://127.0.0.1:<port>` */
  url: string
  /** The server's CPU time so far (user + system, µs), read in the child. */
  cpu: () => Promise<number>
  /** Closes the app and waits for the process to exit. */
  stop: () => Promise<void>
}

const TSX_LOADER = fileURLToPath(import.meta.resolve('tsx'))

/**
 * Our export conditions, passed on: with `--conditions=fastify-resilience-source`
 * (the test suite's smoke run) the server imports plugins/*.ts; without it
 * (`npm run bench`, after a build) it imports dist/, like a user.
 */
const CONDITIONS = process.execArgv.filter((arg) => arg.startsWith('--conditions'))

/**
 * Starts `script` (TypeScript) in a Node process of its own with tsx, our
 * export conditions, an IPC channel and `env` added; `nodeArgs` go before the
 * script (e.g. `--cpu-prof`); pinned to core `cpu` when given.
 */
export function spawnBenchProcess (script: string, options: { env?: Record<string, string>, nodeArgs?: string[], cpu?: number } = {}): ChildProcess {
  const command = [process.execPath, '--import', TSX_LOADER, ...CONDITIONS, ...(options.nodeArgs ?? []), script]
  const [file, ...args] = options.cpu === undefined ? command : pinned(options.cpu, command)
  return spawn(file as string, args, {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, ...options.env }
  })
}

/** Starts `script`, a file calling {@link serveBenchApp}, with {@link spawnBenchProcess}. */
export async function startBenchServer (script: string, env: Record<string, string> = {}, nodeArgs: string[] = [], cpu?: number): Promise<BenchServer> {
  const child = spawnBenchProcess(script, { env, nodeArgs, cpu })
  const exited = once(child, 'exit')
  const first = await nextMessage<ChildMessage>(child, 60_000, `bench server ${script}`)
  if (first.type !== 'listening') {
    child.kill('SIGKILL')
    throw new Error(`bench server ${script} did not start: ${first.type === 'failed' ? first.message : first.type}`)
  }
  return {
    url: `http://127.0.0.1:${first.port}`,
    async cpu () {
      send(child, { type: 'cpu' })
      const reply = await nextMessage<ChildMessage>(child, 30_000, `bench server ${script}`)
      if (reply.type !== 'cpu') throw new Error(`bench server ${script} answered ${reply.type} to a CPU query`)
      return reply.cpu.user + reply.cpu.system
    },
    async stop () {
      if (child.exitCode === null && child.signalCode === null) {
        send(child, { type: 'close' })
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
        await exited
        clearTimeout(timer)
      }
    }
  }
}

/**
 * `command` run on CPU `cpu` only (Linux `taskset`), so that the server and the
 * load generator do not take turns on the same core; unchanged without taskset
 * or without that many cores.
 */
function pinned (cpu: number, command: string[]): string[] {
  return hasTaskset && cpu < availableParallelism() ? ['taskset', '-c', String(cpu), ...command] : command
}

const hasTaskset = (() => {
  try {
    execFileSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
})()

function send (child: ChildProcess, message: ParentMessage): void {
  child.send(message)
}

/** The child's next IPC message; rejects if `what` exits first or says nothing for `timeoutMs`. */
export async function nextMessage<M> (child: ChildProcess, timeoutMs: number, what: string): Promise<M> {
  return await new Promise((resolve, reject) => {
    const onMessage = (message: M): void => { cleanup(); resolve(message) }
    const onExit = (code: number | null, signal: string | null): void => { cleanup(); reject(new Error(`${what} exited (code ${code}, signal ${signal})`)) }
    const timer = setTimeout(() => { cleanup(); reject(new Error(`${what} sent nothing for ${timeoutMs} ms`)) }, timeoutMs)
    function cleanup (): void {
      clearTimeout(timer)
      child.off('message', onMessage)
      child.off('exit', onExit)
    }
    child.on('message', onMessage)
    child.on('exit', onExit)
  })
}

/**
 * Child side: listens on a free loopback port, tells the parent, answers CPU
 * queries, and closes the app (then exits) when asked or when the parent goes away.
 */
export async function serveBenchApp (build: () => Promise<FastifyInstance>): Promise<void> {
  if (process.send === undefined) throw new Error('bench servers are started by bench/run.ts (they need an IPC channel)')
  const reply = (message: ChildMessage): void => { process.send?.(message) }
  let app: FastifyInstance
  try {
    app = await build()
    await app.listen({ host: '127.0.0.1', port: 0 })
  } catch (error) {
    reply({ type: 'failed', message: (error as Error).stack ?? String(error) })
    process.exit(1)
  }
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('expected a TCP address')
  const fail = (error: unknown): void => {
    console.error(error)
    process.exit(1)
  }
  const close = async (): Promise<void> => {
    await app.close()
    process.disconnect?.()
    process.exit(0)
  }
  process.on('message', (message: ParentMessage) => {
    if (message.type === 'cpu') reply({ type: 'cpu', cpu: process.cpuUsage() })
    else close().catch(fail)
  })
  process.on('disconnect', () => { close().catch(fail) })
  reply({ type: 'listening', port: address.port })
}
