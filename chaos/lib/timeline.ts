/**
 * The run's record: what the clients saw (answers by status and tier,
 * latencies) and what the app's /metrics said (breaker state, requests in
 * flight, the limit, a flag), in 250 ms windows; and when each phase began.
 */
import type { AcknowledgedWrite, Answer } from './traffic.js'

export const WINDOW_MS = 250

/** One 250 ms window of the run. */
export interface Window {
  /** Start of the window, ms after the run's start. */
  at: number
  /** Answers by status class: 2xx, 503 (refused), 500, other 5xx, 4xx; failed = no answer (timeout or connection error). */
  ok: number
  refused: number
  internalErrors: number
  otherErrors: number
  clientErrors: number
  failed: number
  /** 2xx answers of lookups and leaderboards by the tier that gave them. */
  primary: number
  cache: number
  default: number
  latenciesMs: number[]
  /** From /metrics, sampled during the window (undefined if no scrape answered). */
  breaker: number | undefined
  inFlight: number | undefined
  limit: number | undefined
  flag: number | undefined
}

export interface Phase {
  name: string
  /** What is done at its start (shown in the report). */
  fault: string
  /** Shaded on the timeline. */
  shaded: boolean
  startAt: number
  endAt: number
}

export class Timeline {
  readonly windows: Window[] = []
  readonly phases: Phase[] = []
  readonly writes: AcknowledgedWrite[] = []

  window (at: number): Window {
    const index = Math.max(0, Math.floor(at / WINDOW_MS))
    while (this.windows.length <= index) {
      this.windows.push({
        at: this.windows.length * WINDOW_MS,
        ok: 0,
        refused: 0,
        internalErrors: 0,
        otherErrors: 0,
        clientErrors: 0,
        failed: 0,
        primary: 0,
        cache: 0,
        default: 0,
        latenciesMs: [],
        breaker: undefined,
        inFlight: undefined,
        limit: undefined,
        flag: undefined
      })
    }
    return this.windows[index] as Window
  }

  record (answer: Answer): void {
    const window = this.window(answer.at)
    const { status } = answer
    if (status >= 200 && status < 300) {
      window.ok++
      window.latenciesMs.push(answer.latencyMs)
      if (answer.tier === 'primary') window.primary++
      else if (answer.tier === 'cache') window.cache++
      else if (answer.tier === 'default') window.default++
    } else if (status === 503) window.refused++
    else if (status === 500) window.internalErrors++
    else if (status > 500) window.otherErrors++
    else if (status >= 400) window.clientErrors++
    else window.failed++
  }

  acknowledge (write: AcknowledgedWrite): void {
    this.writes.push(write)
  }

  /** The phase running at `at` (the last one begun). */
  phaseAt (at: number): Phase | undefined {
    return this.phases.findLast((phase) => phase.startAt <= at)
  }
}

/** The value of the first sample of `series` (name and labels, as exported) in a Prometheus text exposition. */
export function sampleValue (exposition: string, series: string): number | undefined {
  for (const line of exposition.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1))
  }
  return undefined
}
