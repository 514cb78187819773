/** Parent side of bench/load-client.ts: one long-lived load generator process. */
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { nextMessage, spawnBenchProcess } from './server-process.js'

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

/** Starts the load generator, pinned to core `cpu` when given. */
export async function startLoadClient (cpu?: number): Promise<LoadClient> {
  const child = spawnBenchProcess(SCRIPT, { cpu })
  const exited = once(child, 'exit')
  // A round of requests takes seconds; a silent minute means it is stuck.
  const next = async <T>(): Promise<T> => await nextMessage<T>(child, 60_000, 'the load client')
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
