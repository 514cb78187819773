import type { Registry } from 'prom-client'
import { collectedGauge, talliedCounter } from '../metrics/registry.js'
import type { Tally } from '../metrics/registry.js'
import type { Breaker, CallResult } from './breaker.js'
import type { BreakerState } from './circuit-state.js'

const STATE_VALUE: Record<BreakerState, number> = { closed: 0, open: 1, isolated: 1, 'half-open': 2 }

/**
 * The breakers' metrics: `circuit_breaker_calls_total`, counted with plain
 * additions on the hot path and handed to prom-client at scrape time, and
 * `circuit_breaker_state`, computed at scrape time, so it says half-open as
 * soon as the open period is over with no timer running.
 */
export class BreakerMetrics {
  private readonly calls: ReturnType<typeof talliedCounter<'name' | 'result'>>
  private readonly tallies = new Map<Breaker, Record<CallResult, Tally<'name' | 'result'>>>()
  private readonly stopCollecting: () => void

  constructor (registry: Registry) {
    this.calls = talliedCounter(registry, 'circuit_breaker_calls_total', {
      help: 'Calls through each circuit breaker, by result (success, failure, rejected).',
      labelNames: ['name', 'result']
    })
    this.stopCollecting = collectedGauge(registry, 'circuit_breaker_state', {
      help: 'State of each circuit breaker: 0 closed, 1 open (or isolated), 2 half-open.',
      labelNames: ['name']
    }, (gauge) => {
      for (const breaker of this.tallies.keys()) gauge.set({ name: breaker.name }, STATE_VALUE[breaker.state])
    })
  }

  /** Starts counting a new breaker's calls and reporting its state. */
  track (breaker: Breaker): void {
    const { name } = breaker
    this.tallies.set(breaker, {
      success: this.calls.tally({ name, result: 'success' }),
      failure: this.calls.tally({ name, result: 'failure' }),
      rejected: this.calls.tally({ name, result: 'rejected' })
    })
  }

  /** One call of a tracked breaker ended with `result`. */
  counted (breaker: Breaker, result: CallResult): void {
    (this.tallies.get(breaker) as Record<CallResult, Tally<'name' | 'result'>>)[result].count++
  }

  stop (): void {
    this.stopCollecting()
    this.calls.stop()
  }
}
