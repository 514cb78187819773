import { handleWhen, retry } from 'cockatiel'
import type { IBackoff, IBackoffFactory, RetryPolicy } from 'cockatiel'
import type { Counter, Registry } from 'prom-client'
import { RetryExhaustedError, withRetryAfter } from '../../errors.js'
import { neverAborted, sleep, untilAborted } from '../time/abort.js'
import { DEPENDENCY_RETRY_AFTER_MS } from '../failure/client-safe-error.js'
import { counter, talliedHistogram } from '../metrics/registry.js'
import type { HistogramTally, TalliedHistogram } from '../metrics/tallied-histogram.js'
import { RetryBudget } from './retry-budget.js'
import type { RetryBudgetSettings } from './retry-budget.js'

/** What the retried function receives. */
export interface RetryContext {
  /** 0 for the first call, then 1, 2, ... for each retry. */
  attempt: number
  /** Aborted when the caller gives up. */
  signal: AbortSignal
}

export type RetryableFunction<T> = (context: RetryContext) => PromiseLike<T> | T

/** Fully resolved settings of a retried operation (built once, reused per call). */
export interface RetrySettings {
  maxRetries: number
  backoff: IBackoffFactory<unknown>
  maxElapsedMs: number | undefined
  isRetryable: (error: unknown) => boolean
  operation: string
  budget: RetryBudgetSettings | false
  /** cockatiel's loop of the retries, after the first attempt fails (see {@link retryPolicy}). */
  policy: RetryPolicy
}

/** A retry context whose signal is built only if the function reads it. */
class LazyContext implements RetryContext {
  readonly attempt: number
  private readonly resolve: () => AbortSignal

  constructor (attempt: number, resolve: () => AbortSignal) {
    this.attempt = attempt
    this.resolve = resolve
  }

  get signal (): AbortSignal {
    return this.resolve()
  }
}

/** Thrown inside cockatiel's loop to end it without another attempt. */
const stopRetrying = Symbol('stop retrying')

/**
 * Builds cockatiel's loop of the retries: the first attempt is called directly
 * by {@link Retrier.run}, and only a retryable failure of it enters this loop,
 * whose first call is the first retry; it then retries `maxRetries - 1` more
 * times what `isRetryable` accepts, never our stop signal.
 */
export function retryPolicy (maxRetries: number, isRetryable: (error: unknown) => boolean): RetryPolicy {
  return retry(handleWhen((error) => error !== stopRetrying && isRetryable(error)), { maxAttempts: Math.max(0, maxRetries - 1) })
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
 * Runs functions with retries for one app: the first attempt is a plain call;
 * after a retryable failure cockatiel's `retry` drives the loop and the
 * classification; delays come from a cockatiel backoff but are
 * slept here, abortably (cockatiel's sleep ignores the signal); a per-operation
 * retry budget and a total deadline can end the loop early.
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
   * client signal). A lazy signal stops the loop between attempts and mid-sleep;
   * the attempt in flight ends on its own (its own timeout and signal).
   */
  async run<T>(settings: RetrySettings, fn: RetryableFunction<T>, signal: AbortSignal | (() => AbortSignal) = neverAborted): Promise<T> {
    let resolved = typeof signal === 'function' ? undefined : signal
    const current = (): AbortSignal => (resolved ??= (signal as () => AbortSignal)())
    const contextOf = (attempt: number): RetryContext => resolved === undefined ? new LazyContext(attempt, current) : { attempt, signal: resolved }
    resolved?.throwIfAborted()
    const { budget, retriesOf } = this.partsOf(settings)
    budget?.recordCall()
    const startedAt = settings.maxElapsedMs === undefined ? 0 : Date.now()
    let lastError: unknown
    let retries = 0
    let stoppedBy: 'budget' | 'deadline' | undefined

    try {
      // The first attempt, called directly: most calls end here, at the cost
      // of one call. A retryable failure hands over to cockatiel's loop.
      try {
        const value = await unlessAborted(fn(contextOf(0)), resolved)
        retriesOf.observe(0)
        return value
      } catch (error) {
        lastError = error
        if (resolved?.aborted === true || settings.maxRetries === 0 || !settings.isRetryable(error)) throw error
      }

      let backoff: IBackoff<unknown> | undefined
      const retry = async ({ attempt: loopAttempt }: { attempt: number }): Promise<T> => {
        const attempt = loopAttempt + 1
        backoff = backoff === undefined ? settings.backoff.next(undefined) : backoff.next(undefined)
        if (settings.maxElapsedMs !== undefined && Date.now() - startedAt + backoff.duration > settings.maxElapsedMs) {
          stoppedBy = 'deadline'
          throw stopRetrying
        }
        if (budget !== undefined && !budget.tryRetry()) {
          stoppedBy = 'budget'
          throw stopRetrying
        }
        await sleep(backoff.duration, current())
        retries = attempt
        try {
          return await fn(contextOf(attempt))
        } catch (error) {
          lastError = error
          throw error
        }
      }
      const value = await unlessAborted(settings.policy.execute(retry, resolved ?? neverAborted), resolved)
      retriesOf.observe(retries)
      return value
    } catch (error) {
      retriesOf.observe(retries)
      if (resolved?.aborted === true) throw error
      if (stoppedBy === 'budget') {
        this.budgetExhausted.inc({ operation: settings.operation })
        throw lastError
      }
      if (stoppedBy === 'deadline' || (retries === settings.maxRetries && settings.isRetryable(error))) {
        throw retryExhausted(settings.operation, retries + 1, lastError)
      }
      throw error
    }
  }
}

/** `FST_RESILIENCE_RETRY_EXHAUSTED` with its attempts, cause and `Retry-After`. */
function retryExhausted (operation: string, attempts: number, cause: unknown): InstanceType<typeof RetryExhaustedError> {
  return withRetryAfter(new RetryExhaustedError(operation, attempts, { cause }), DEPENDENCY_RETRY_AFTER_MS)
}
