/**
 * The overhead benchmark's load generator, a long-lived process of its own
 * (started by bench/lib/load-client.ts): for each request over IPC, autocannon
 * sends `amount` requests to `url` over `connections` connections, and the
 * summary goes back. Elapsed time ends at the last response (autocannon's own
 * report only ends at its next one-second tick).
 */
import autocannon from 'autocannon'
import type { LoadRequest, LoadResult } from './lib/load-client.js'

async function load ({ url, amount, connections }: LoadRequest): Promise<LoadResult> {
  return await new Promise((resolve, reject) => {
    const started = process.hrtime.bigint()
    let lastResponse = started
    const instance = autocannon({ url, amount, connections }, (error, result) => {
      if (error !== null && error !== undefined) {
        reject(error instanceof Error ? error : new Error(String(error)))
        return
      }
      resolve({ ok: result['2xx'], non2xx: result.non2xx, errors: result.errors, timeouts: result.timeouts, seconds: Number(lastResponse - started) / 1e9 })
    })
    instance.on('response', () => { lastResponse = process.hrtime.bigint() })
  })
}

process.on('message', (request: LoadRequest) => {
  load(request).then((result) => process.send?.(result), (error: unknown) => {
    console.error(error)
    process.exit(1)
  })
})
process.on('disconnect', () => process.exit(0))
process.send?.({ ready: true })
