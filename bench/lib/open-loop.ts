/**
 * HTTP load generators for the overload benchmark, run in the benchmark's own
 * process (the server under test runs in another).
 *
 * {@link openLoop} sends requests at a fixed arrival rate whether or not the
 * earlier ones have been answered, as independent users do, and measures each
 * latency from the time the request was *scheduled*, so a late generator does
 * not hide queueing (no coordinated omission). A request not answered within
 * the client timeout is abandoned: its connection is reset, as a client that
 * gives up closes it, and it counts as a timeout.
 *
 * {@link closedLoop} keeps a fixed number of requests in flight, each sent
 * when the previous one is answered: with enough of them it saturates the
 * server and measures its capacity.
 */
import http from 'node:http'
import { performance } from 'node:perf_hooks'

/** How a request ended. */
export type Outcome = 'success' | 'shed' | 'timeout' | 'status' | 'error'

/** Options of {@link openLoop}. */
export interface OpenLoopOptions {
  /** Full URL of the GET request, e.g. `http://127.0.0.1:3000/work`. */
  url: string
  /** Arrivals per second, evenly spaced. */
  rate: number
  /** Requests scheduled during this first part are sent but not counted (ms). */
  warmupMs: number
  /** Length of the counted part, after the warm-up (ms). */
  durationMs: number
  /** A request not answered this long after its scheduled time is abandoned (ms). */
  timeoutMs: number
  /**
   * Width of the buckets of {@link OpenLoopResult.timeline} (ms).
   * @default 1000
   */
  bucketMs?: number
  /** Called once with the `performance.now()` time of the first scheduled send, so that the caller can time events against the schedule. */
  onStart?: (startMs: number) => void
}

/** One bucket of {@link OpenLoopResult.timeline}. */
export interface TimelineBucket {
  /** Answers by outcome. */
  counts: Record<Outcome, number>
  /** Sum of the latencies of the successes (ms). */
  successLatencyMsSum: number
}

/** What {@link openLoop} counted, over the requests scheduled after the warm-up. */
export interface OpenLoopResult {
  /** Requests scheduled in the counted part. */
  sent: number
  /** Length of the counted part (ms). */
  durationMs: number
  /** Answers by outcome: 2xx (`success`), 503 (`shed`), timeout, other status, network error. */
  counts: Record<Outcome, number>
  /** Latency of each success, from its scheduled time to its response headers (ms). */
  successLatenciesMs: number[]
  /** How late requests left the generator compared with their schedule, 99th percentile (ms). */
  sendLagP99Ms: number
  /** CPU time (user + system) of this process during the run (ms). */
  cpuMs: number
  /**
   * Every request, the warm-up included, by outcome, bucketed by the time it
   * was *scheduled*: bucket `i` holds the requests scheduled from `i * bucketMs`
   * to `(i + 1) * bucketMs` after the start. At a fixed rate each bucket is
   * offered the same load, and a request counts where it arrived, not where
   * it was answered (at most one client timeout later).
   */
  timeline: TimelineBucket[]
}

interface Pending {
  scheduled: number
  bucket: TimelineBucket
  counted: boolean
  done: boolean
  request: http.ClientRequest | undefined
}

function emptyCounts (): Record<Outcome, number> {
  return { success: 0, shed: 0, timeout: 0, status: 0, error: 0 }
}

function newAgent (): http.Agent {
  // Sockets are reused most-recently-first, so few of them stay open; idle
  // ones are kept (not closed at 256) because the next burst needs them.
  return new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 65_536, scheduling: 'lifo' })
}

function cpuMsSince (start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start)
  return (used.user + used.system) / 1000
}

/**
 * Sends GET requests to `url` at `rate` per second for `warmupMs + durationMs`,
 * then waits until every request is answered or abandoned. Counts the
 * requests scheduled after the warm-up.
 */
export async function openLoop (options: OpenLoopOptions): Promise<OpenLoopResult> {
  const { rate, warmupMs, durationMs, timeoutMs, bucketMs = 1000 } = options
  if (!(rate > 0)) throw new RangeError(`rate must be positive, got ${rate}`)
  if (!(bucketMs > 0)) throw new RangeError(`bucketMs must be positive, got ${bucketMs}`)
  const target = new URL(options.url)
  const agent = newAgent()
  const counts = emptyCounts()
  const successLatenciesMs: number[] = []
  const sendLags: number[] = []
  const interval = 1000 / rate
  const total = Math.floor(((warmupMs + durationMs) / 1000) * rate)
  const countFrom = Math.ceil((warmupMs / 1000) * rate)
  const timeline = Array.from({ length: Math.max(1, Math.ceil((warmupMs + durationMs) / bucketMs)) }, (): TimelineBucket => ({ counts: emptyCounts(), successLatencyMsSum: 0 }))
  const cpuStart = process.cpuUsage()
  // In scheduled order, so that the oldest pending request is always first.
  let queue: Pending[] = []
  let head = 0
  let next = 0
  const start = performance.now() + 5

  const settle = (pending: Pending, outcome: Outcome, latencyMs?: number): void => {
    if (pending.done) return
    pending.done = true
    pending.request = undefined
    pending.bucket.counts[outcome]++
    if (outcome === 'success' && latencyMs !== undefined) pending.bucket.successLatencyMsSum += latencyMs
    if (!pending.counted) return
    counts[outcome]++
    if (outcome === 'success' && latencyMs !== undefined) successLatenciesMs.push(latencyMs)
  }

  const send = (index: number, now: number): void => {
    const scheduled = start + index * interval
    const bucket = timeline[Math.min(timeline.length - 1, Math.floor((index * interval) / bucketMs))] as TimelineBucket
    const pending: Pending = { scheduled, bucket, counted: index >= countFrom, done: false, request: undefined }
    queue.push(pending)
    if (pending.counted) sendLags.push(now - scheduled)
    const request = http.get({ hostname: target.hostname, port: target.port, path: target.pathname + target.search, agent }, (response) => {
      const latencyMs = performance.now() - scheduled
      const status = response.statusCode ?? 0
      response.on('error', () => {})
      response.resume()
      if (latencyMs > timeoutMs) settle(pending, 'timeout')
      else if (status >= 200 && status < 300) settle(pending, 'success', latencyMs)
      else if (status === 503) settle(pending, 'shed')
      else settle(pending, 'status')
    })
    request.on('error', () => settle(pending, 'error'))
    pending.request = request
  }

  // Abandons the requests past their deadline: reset (no TIME_WAIT left on
  // this side, so that thousands of abandoned connections do not exhaust the
  // loopback ports), as a client that gives up closes its connection.
  const sweep = (now: number): void => {
    while (head < queue.length) {
      const pending = queue[head] as Pending
      if (!pending.done) {
        if (now - pending.scheduled < timeoutMs) break
        const request = pending.request
        settle(pending, 'timeout')
        if (request !== undefined) {
          const socket = request.socket
          if (socket !== null && typeof socket.resetAndDestroy === 'function' && !socket.destroyed) socket.resetAndDestroy()
          request.destroy()
        }
      }
      head++
    }
    if (head > 4096 && head * 2 > queue.length) {
      queue = queue.slice(head)
      head = 0
    }
  }

  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now()
      while (next < total && start + next * interval <= now) send(next++, now)
      sweep(now)
      if (next < total) {
        setTimeout(tick, Math.max(0, start + next * interval - performance.now()))
      } else if (head < queue.length) {
        setTimeout(tick, 5)
      } else {
        resolve()
      }
    }
    options.onStart?.(start)
    setTimeout(tick, 5)
  })
  agent.destroy()
  sendLags.sort((a, b) => a - b)
  return {
    sent: total - countFrom,
    durationMs,
    counts,
    successLatenciesMs,
    sendLagP99Ms: sendLags.length === 0 ? 0 : sendLags[Math.min(sendLags.length - 1, Math.ceil(sendLags.length * 0.99) - 1)] as number,
    cpuMs: cpuMsSince(cpuStart),
    timeline
  }
}

/** Options of {@link closedLoop}. */
export interface ClosedLoopOptions {
  /** Full URL of the GET request. */
  url: string
  /** Requests kept in flight. */
  concurrency: number
  /** Answers during this first part are not counted (ms). */
  warmupMs: number
  /** Length of the counted part (ms). */
  durationMs: number
}

/** What {@link closedLoop} counted. */
export interface ClosedLoopResult {
  /** 2xx answers per second in the counted part. */
  successesPerSecond: number
  /** Answers that were not 2xx, or failed, in the counted part. */
  failures: number
}

/**
 * Keeps `concurrency` GET requests to `url` in flight for `warmupMs +
 * durationMs`, each sent as soon as the previous one is answered, and counts
 * the answers that arrive after the warm-up.
 */
export async function closedLoop (options: ClosedLoopOptions): Promise<ClosedLoopResult> {
  const target = new URL(options.url)
  const agent = newAgent()
  const start = performance.now()
  const countFrom = start + options.warmupMs
  const end = countFrom + options.durationMs
  let successes = 0
  let failures = 0
  const worker = async (): Promise<void> => {
    while (performance.now() < end) {
      const ok = await new Promise<boolean>((resolve) => {
        const request = http.get({ hostname: target.hostname, port: target.port, path: target.pathname + target.search, agent }, (response) => {
          response.resume()
          response.on('end', () => resolve(response.statusCode !== undefined && response.statusCode >= 200 && response.statusCode < 300))
          response.on('error', () => resolve(false))
        })
        request.on('error', () => resolve(false))
        // A server that never answers must not hang the benchmark.
        request.setTimeout(30_000, () => request.destroy())
      })
      const now = performance.now()
      if (now >= countFrom && now < end) {
        if (ok) successes++
        else failures++
      }
    }
  }
  await Promise.all(Array.from({ length: options.concurrency }, worker))
  agent.destroy()
  return { successesPerSecond: successes / (options.durationMs / 1000), failures }
}
