/**
 * Open-loop traffic on the players service: requests leave at a fixed rate
 * whether or not earlier ones were answered (as independent users do; see
 * bench/lib/open-loop.ts), and each latency is measured from the request's
 * scheduled time, so a late generator does not hide queueing. The rate can
 * change while it runs (the overload burst).
 *
 * The mix: 80 % player lookups, 10 % leaderboards, 10 % score updates. Each
 * update writes a new, larger score to a player of the write range, so the
 * database can be checked afterwards for every acknowledged write.
 */
import http from 'node:http'
import { performance } from 'node:perf_hooks'

export type RequestKind = 'lookup' | 'leaderboard' | 'write'

/** How one request ended, `at` ms after the run's start (its answer, or its abandonment). */
export interface Answer {
  at: number
  kind: RequestKind
  /** HTTP status; 0 when the connection failed, -1 when the client gave up waiting. */
  status: number
  /** The fallback tier that answered (`x-served-by`), for lookups and leaderboards. */
  tier: string | undefined
  latencyMs: number
}

/** An acknowledged (200) score update. */
export interface AcknowledgedWrite { id: number, score: number, at: number }

export interface TrafficOptions {
  baseUrl: string
  /** Players 1..lookupIds are looked up; writes go to the ids above, up to players. */
  lookupIds: number
  players: number
  /** A request not answered this long after its scheduled time is abandoned (ms). */
  timeoutMs: number
  /** Time origin of `Answer.at` (performance.now()). */
  startedAt: number
  onAnswer: (answer: Answer) => void
  onAcknowledgedWrite: (write: AcknowledgedWrite) => void
}

export class Traffic {
  private readonly options: TrafficOptions
  private readonly target: URL
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 65_536, scheduling: 'lifo' })
  private readonly pending = new Set<Promise<void>>()
  private intervalMs = Infinity
  private nextAt = 0
  private sent = 0
  private timer: NodeJS.Timeout | undefined
  private stopped = false

  constructor (options: TrafficOptions) {
    this.options = options
    this.target = new URL(options.baseUrl)
  }

  /** Requests per second from now on. */
  setRate (perSecond: number): void {
    const now = performance.now()
    this.intervalMs = 1000 / perSecond
    this.nextAt = Math.max(now, Math.min(this.nextAt, now + this.intervalMs))
    if (this.timer === undefined && !this.stopped) this.tick()
  }

  /** Stops sending and waits until every request is answered or abandoned. */
  async stop (): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    this.timer = undefined
    await Promise.all(this.pending)
    this.agent.destroy()
  }

  private tick (): void {
    const now = performance.now()
    while (this.nextAt <= now) {
      this.send(this.nextAt)
      this.nextAt += this.intervalMs
    }
    this.timer = setTimeout(() => this.tick(), Math.max(0, this.nextAt - performance.now()))
  }

  private send (scheduled: number): void {
    const n = this.sent++
    const { lookupIds, players } = this.options
    let kind: RequestKind = 'lookup'
    let method = 'GET'
    let path: string
    let body: string | undefined
    let write: { id: number, score: number } | undefined
    if (n % 10 === 0) {
      kind = 'write'
      method = 'PUT'
      write = { id: lookupIds + 1 + ((n / 10) % (players - lookupIds)), score: n + 1 }
      path = `/players/${write.id}/score`
      body = JSON.stringify({ score: write.score })
    } else if (n % 10 === 1) {
      kind = 'leaderboard'
      path = '/leaderboard?limit=10'
    } else {
      // A fixed stride over the lookup range: every player is read, some often enough to be cached.
      path = `/players/${1 + ((n * 7919) % lookupIds)}`
    }
    const answered = new Promise<void>((resolve) => {
      let settled = false
      const settle = (status: number, tier: string | undefined): void => {
        if (settled) return
        settled = true
        const now = performance.now()
        this.options.onAnswer({ at: now - this.options.startedAt, kind, status, tier, latencyMs: now - scheduled })
        if (status === 200 && write !== undefined) this.options.onAcknowledgedWrite({ ...write, at: now - this.options.startedAt })
        resolve()
      }
      const request = http.request({
        hostname: this.target.hostname,
        port: this.target.port,
        method,
        path,
        agent: this.agent,
        headers: body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }
      }, (response) => {
        response.resume()
        response.on('error', () => settle(0, undefined))
        response.on('end', () => {
          const servedBy = response.headers['x-served-by']
          settle(response.statusCode ?? 0, typeof servedBy === 'string' ? servedBy : undefined)
        })
      })
      const remaining = Math.max(1, this.options.timeoutMs - (performance.now() - scheduled))
      request.setTimeout(remaining, () => {
        settle(-1, undefined)
        request.destroy()
      })
      request.on('error', () => settle(0, undefined))
      request.end(body)
    })
    this.pending.add(answered)
    answered.finally(() => this.pending.delete(answered)).catch(() => {})
  }
}
