import type { IBackoff, IBackoffFactory } from 'cockatiel'
import type { Counter, Registry } from 'prom-client'
import { RetryExhaustedError, withRetryAfter } from '../../errors.js'
import { neverAborted, sleep, untilAborted } from '../time/abort.js'
import { systemClock } from '../time/clock.js'
import { DEPENDENCY_RETRY_AFTER_MS } from '../failure/client-safe-error.js'
import { counter, talliedHistogram } from '../metrics/registry.js'
import type { HistogramTally, TalliedHistogram } from '../metrics/tallied-histogram.js'
import { LazyContext, LazySignal } from './retry-context.js'
import type { RetryableFunction } from './retry-context.js'
import { RetryBudget } from './retry-budget.js'
import type { RetryBudgetSettings } from './retry-budget.js'

/** Fully resolved settings of a retried operation (built once, reused per call). */
export interface RetrySettings {
  maxRetries: number
  backoff: IBackoffFactory<unknown>
  maxElapsedMs: number | undefined
  isRetryable: (error: unknown) => boolean
  operation: string
  budget: RetryBudgetSettings | false
}

/**
 * `value`, or a promise rejected with the signal's reason as soon as it
 * aborts; without a signal that can abort, `value` itself (no race, no promise).
 */
function unlessAborted<T> (value: PromiseLike<T> | T, signal: AbortSignal | undefined): PromiseLike<T> | T {
  return signal === undefined || signal === neverAborted ? value : untilAborted(Promise.resolve(value), signal)
}

function sameBudget (a: RetryBudgetSettings, b: RetryBudgetSettings): boolean {
  return a.ratio === b.ratio && a.minRetriesPerSecond === b.minRetriesPerSecond && a.windowMs === b.windowMs
}

/**
 * Runs functions with retries for one app: a loop over attempts that sleeps
 * the delays of a cockatiel backoff itself, abortably (cockatiel's sleep
 * ignores the signal), and ends early when a per-operation retry budget is
 * spent or the next delay would end past the total deadline.
 */
export class Retrier {
  private readonly budgets = new Map<string, RetryBudget>()
  private readonly partsBySettings = new WeakMap<RetrySettings, { budget: RetryBudget | undefined, retriesOf: HistogramTally }>()
  private readonly retriesHistogram: TalliedHistogram<'operation'>
  private readonly budgetExhausted: Counter<'operation'>
  private readonly plugin: string

  constructor (registry: Registry, plugin: string) {
    this.plugin = plugin
    this.retriesHistogram = talliedHistogram(registry, 'operation_retries', {
      help: 'Retries per call of each operation (0 when the first attempt settled it).',
      labelNames: ['operation'],
      buckets: [0, 1, 2, 3, 5, 10]
    })
    this.budgetExhausted = counter(registry, 'retry_budget_exhausted_total', {
      help: 'Calls that failed without a retry because their operation\'s retry budget was spent.',
      labelNames: ['operation']
    })
  }

  /** The budget and histogram tally of these settings, looked up once per settings object. */
  private partsOf (settings: RetrySettings): { budget: RetryBudget | undefined, retriesOf: HistogramTally } {
    let parts = this.partsBySettings.get(settings)
    if (parts === undefined) {
      parts = {
        budget: settings.budget === false ? undefined : this.budgetFor(settings.operation, settings.budget),
        retriesOf: this.retriesHistogram.tally({ operation: settings.operation })
      }
      this.partsBySettings.set(settings, parts)
    }
    return parts
  }

  /** The operation's budget, created with the first settings it is used with. */
  budgetFor (operation: string, settings: RetryBudgetSettings): RetryBudget {
    const existing = this.budgets.get(operation)
    if (existing === undefined) {
      const budget = new RetryBudget(settings)
      this.budgets.set(operation, budget)
      return budget
    }
    if (!sameBudget(existing.settings, settings)) {
      throw new TypeError(`${this.plugin}: operation "${operation}" already has a retry budget with other settings; use the same "budget" or another "operation"`)
    }
    return existing
  }

  /**
   * Runs `fn` with retries. `signal` may be given lazily, as a function called
   * only when a retry is about to happen or `fn` reads its context's signal: a
   * call that succeeds at once then never builds one (the route pipeline's
   * client signal). Once built, the signal ends the call at once, mid-attempt
   * or mid-sleep, and no attempt follows.
   */
  async run<T>(settings: RetrySettings, fn: RetryableFunction<T>, signal: AbortSignal | (() => AbortSignal) = neverAborted): Promise<T> {
    const lazy = typeof signal === 'function' ? new LazySignal(signal) : undefined
    // The signal once it exists: the one given, or the lazy one once built.
    let known = lazy === undefined ? signal as AbortSignal : undefined
    known?.throwIfAborted()
    const { budget, retriesOf } = this.partsOf(settings)
    budget?.recordCall()
    const startedAt = settings.maxElapsedMs === undefined ? 0 : systemClock.now()
    let backoff: IBackoff<unknown> | undefined
    let attempt = 0
    try {
      for (; ; attempt++) {
        try {
          // While no signal is known, the signal is lazy.
          const result = fn(known === undefined ? new LazyContext(attempt, lazy as LazySignal) : { attempt, signal: known })
          // The function may have built the lazy signal: then the attempt races it.
          known ??= lazy?.peek()
          return await unlessAborted(result, known)
        } catch (error) {
          known ??= lazy?.peek()
          if (known?.aborted === true || !settings.isRetryable(error)) throw error
          if (attempt === settings.maxRetries) throw retryExhausted(settings.operation, attempt + 1, error)
          backoff = backoff === undefined ? settings.backoff.next(undefined) : backoff.next(undefined)
          if (settings.maxElapsedMs !== undefined && systemClock.now() - startedAt + backoff.duration > settings.maxElapsedMs) {
            throw retryExhausted(settings.operation, attempt + 1, error)
          }
          if (budget !== undefined && !budget.tryRetry()) {
            this.budgetExhausted.inc({ operation: settings.operation })
            throw error
          }
        }
        await sleep(backoff.duration, known ??= (lazy as LazySignal).get())
      }
    } finally {
      retriesOf.observe(attempt)
    }
  }
}

/** `FST_RESILIENCE_RETRY_EXHAUSTED` with its attempts, cause and `Retry-After`. */
function retryExhausted (operation: string, attempts: number, cause: unknown): InstanceType<typeof RetryExhaustedError> {
  return withRetryAfter(new RetryExhaustedError(operation, attempts, { cause }), DEPENDENCY_RETRY_AFTER_MS)
}
