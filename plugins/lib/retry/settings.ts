import { createBackoff } from './backoff.js'
import type { BackoffSettings, Jitter } from './backoff.js'
import type { RetrySettings } from './retrier.js'
import type { RetryBudgetSettings } from './retry-budget.js'
import { OptionReader, isPlainObject } from '../plugin/options.js'
import { isTransientError } from '../failure/transient.js'

/** Options of one retried call; the plugin options are their defaults. */
export interface RetryOptions {
  /**
   * Retries after the first call (so at most `maxRetries + 1` attempts).
   * @default 3
   */
  maxRetries?: number
  /**
   * Delay before the first retry, in milliseconds.
   * @default 100
   */
  initialDelayMs?: number
  /**
   * Growth of the delay from one retry to the next (at least 1).
   * @default 2
   */
  multiplier?: number
  /**
   * Cap of any one delay, in milliseconds.
   * @default 10000
   */
  maxDelayMs?: number
  /**
   * How delays are spread: `'decorrelated'` (Polly's decorrelated jitter),
   * `'full'` (uniform between 0 and the exponential delay) or `'none'`.
   * @default 'decorrelated'
   */
  jitter?: Jitter
  /**
   * Total deadline in milliseconds: no retry starts whose delay would end past it.
   * @default undefined (none)
   */
  maxElapsedMs?: number
  /**
   * Whether an error is worth another attempt.
   * @default isTransientError (see the README's classification table)
   */
  isRetryable?: (error: unknown) => boolean
  /** Stops everything at once when it aborts, even in the middle of a delay. */
  signal?: AbortSignal
  /**
   * Name of the operation: the `operation` label of the metrics, and the key
   * of its retry budget.
   * @default 'default'
   */
  operation?: string
  /**
   * The operation's retry budget, or `false` for none.
   * @default { ratio: 0.2, minRetriesPerSecond: 10, windowMs: 10000 }
   */
  budget?: Partial<RetryBudgetSettings> | false
}

const RETRY_OPTION_KEYS = ['maxRetries', 'initialDelayMs', 'multiplier', 'maxDelayMs', 'jitter', 'maxElapsedMs', 'isRetryable', 'signal', 'operation', 'budget'] as const
const BUDGET_KEYS = ['ratio', 'minRetriesPerSecond', 'windowMs'] as const
const JITTERS: readonly Jitter[] = ['decorrelated', 'full', 'none']

/**
 * Retry options with every field resolved: the plugin's defaults, a route's or
 * a call's options over them; what {@link retrySettings} builds from.
 */
export interface ResolvedRetryOptions extends BackoffSettings {
  maxRetries: number
  maxElapsedMs: number | undefined
  isRetryable: (error: unknown) => boolean
  operation: string
  budget: RetryBudgetSettings | false
}

const DEFAULTS: ResolvedRetryOptions = {
  maxRetries: 3,
  initialDelayMs: 100,
  multiplier: 2,
  maxDelayMs: 10_000,
  jitter: 'decorrelated',
  maxElapsedMs: undefined,
  isRetryable: isTransientError,
  operation: 'default',
  budget: { ratio: 0.2, minRetriesPerSecond: 10, windowMs: 10_000 }
}

function resolveBudget (read: OptionReader, option: string, raw: unknown, base: RetryBudgetSettings | false): RetryBudgetSettings | false {
  if (raw === false) return false
  if (raw === undefined) return base
  if (!isPlainObject(raw)) throw read.fail(option, 'false or an object', raw)
  const budget = read.object<RetryBudgetSettings>(option, raw, BUDGET_KEYS)
  const from = base === false ? DEFAULTS.budget as RetryBudgetSettings : base
  return {
    ratio: read.number(`${option}.ratio`, budget.ratio, from.ratio, { min: 0, max: 1 }),
    minRetriesPerSecond: read.number(`${option}.minRetriesPerSecond`, budget.minRetriesPerSecond, from.minRetriesPerSecond, { min: 0 }),
    windowMs: read.number(`${option}.windowMs`, budget.windowMs, from.windowMs, { min: 10 })
  }
}

/** Validates retry options (named `option.x` in messages) and resolves them over `base`. */
export function resolveRetryOptions (read: OptionReader, option: string, raw: unknown, base: ResolvedRetryOptions = DEFAULTS): ResolvedRetryOptions {
  const opts = read.object<RetryOptions>(option, raw, RETRY_OPTION_KEYS)
  const at = (key: string): string => option === 'options' ? key : `${option}.${key}`
  const initialDelayMs = read.number(at('initialDelayMs'), opts.initialDelayMs, base.initialDelayMs, { min: 0 })
  const maxDelayMs = read.number(at('maxDelayMs'), opts.maxDelayMs, base.maxDelayMs, { min: 0 })
  if (maxDelayMs < initialDelayMs) throw read.fail(at('maxDelayMs'), `at least "initialDelayMs" (${initialDelayMs})`, maxDelayMs)
  return {
    maxRetries: read.number(at('maxRetries'), opts.maxRetries, base.maxRetries, { min: 0, integer: true }),
    initialDelayMs,
    multiplier: read.number(at('multiplier'), opts.multiplier, base.multiplier, { min: 1 }),
    maxDelayMs,
    jitter: read.oneOf(at('jitter'), opts.jitter, base.jitter, JITTERS),
    maxElapsedMs: opts.maxElapsedMs === undefined ? base.maxElapsedMs : read.number(at('maxElapsedMs'), opts.maxElapsedMs, 0, { min: 1 }),
    isRetryable: read.function(at('isRetryable'), opts.isRetryable, base.isRetryable),
    operation: read.labelValue(at('operation'), opts.operation, base.operation),
    budget: resolveBudget(read, at('budget'), opts.budget, base.budget)
  }
}

/** Turns resolved options into what the retrier runs (the backoff built once). */
export function retrySettings (options: ResolvedRetryOptions): RetrySettings {
  return {
    maxRetries: options.maxRetries,
    backoff: createBackoff(options),
    maxElapsedMs: options.maxElapsedMs,
    isRetryable: options.isRetryable,
    operation: options.operation,
    budget: options.budget
  }
}
