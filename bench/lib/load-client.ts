/** Parent side of bench/load-client.ts: one long-lived load generator process. */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { pinned } from './server-process.js'

export interface LoadRequest {
  url: string
  amount: number
  connections: number
}

export interface LoadResult {
  ok: number
  non2xx: number
  errors: number
  timeouts: number
  /** From the start to the last response. */
  seconds: number
}

export interface LoadClient {
  /** Sends `amount` requests to `url` and reports how it went. */
  run: (request: LoadRequest) => Promise<LoadResult>
  stop: () => Promise<void>
}

const SCRIPT = fileURLToPath(new URL('../load-client.ts', import.meta.url))

/** Starts the load generator, pinned to CPU `cpu` when taskset exists. */
export async function startLoadClient (cpu?: number): Promise<LoadClient> {
  const command = [process.execPath, '--import', import.meta.resolve('tsx'), SCRIPT]
  const [file, ...args] = cpu === undefined ? command : pinned(cpu, command)
  const child = spawn(file as string, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const exited = once(child, 'exit')
  const next = async <T>(): Promise<T> => await Promise.race([
    once(child, 'message').then(([message]) => message as T),
    exited.then(([code]) => { throw new Error(`the load client exited (code ${String(code)})`) })
  ])
  await next<{ ready: true }>()
  return {
    async run (request) {
      child.send(request)
      return await next<LoadResult>()
    },
    async stop () {
      if (child.exitCode === null && child.signalCode === null) {
        child.disconnect()
        await exited
      }
    }
  }
}
