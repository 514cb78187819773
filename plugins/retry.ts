import type { FastifyPluginAsync } from 'fastify'
import fp from 'fastify-plugin'
import { useMetricsRegistry } from './lib/metrics/registry.js'
import { provideRetryInternals } from './lib/retry/internals.js'
import { Retrier } from './lib/retry/retrier.js'
import type { RetryableFunction } from './lib/retry/retry-context.js'
import { RetrySettingsCache } from './lib/retry/settings-cache.js'
import { resolveRetryOptions, retrySettings } from './lib/retry/settings.js'
import type { RetryOptions } from './lib/retry/settings.js'
import { OptionReader, isPlainObject } from './lib/plugin/options.js'
import { registerOnce } from './lib/plugin/register-once.js'

export { isTransientError } from './lib/failure/transient.js'
export type { Jitter } from './lib/retry/backoff.js'
export type { RetryContext, RetryableFunction } from './lib/retry/retry-context.js'
export type { RetryBudgetSettings } from './lib/retry/retry-budget.js'
export type { RetryOptions } from './lib/retry/settings.js'

const PLUGIN = 'fastify-resilience-retry'

/** Options of the retry plugin: the defaults of every `app.retry` call. */
export type RetryPluginOptions = Omit<RetryOptions, 'signal'>

/** `app.retry(fn, options?)`: runs `fn({ attempt, signal })` with retries. */
export type RetryFunction = <T>(fn: RetryableFunction<T>, options?: RetryOptions) => Promise<T>

declare module 'fastify' {
  interface FastifyInstance {
    /** Retries with exponential backoff, jitter and a retry budget (fastify-resilience-retry). */
    retry: RetryFunction
  }
}

const retryPlugin: FastifyPluginAsync<RetryPluginOptions> = async (app, rawOptions) => {
  const read = new OptionReader(PLUGIN)
  if (isPlainObject(rawOptions) && 'signal' in rawOptions) {
    throw read.fail('signal', 'given per call, not as a plugin option', 'an AbortSignal')
  }
  const defaults = resolveRetryOptions(read, 'options', rawOptions)
  registerOnce(app, PLUGIN)
  const retrier = new Retrier(useMetricsRegistry(app), PLUGIN)
  const defaultSettings = retrySettings(defaults)

  const cache = new RetrySettingsCache()

  // Not an async function: a call goes straight to the retrier's promise.
  const run: RetryFunction = (fn, options) => {
    if (options === undefined && typeof fn === 'function') return retrier.run(defaultSettings, fn)
    try {
      if (typeof fn !== 'function') throw read.fail('fn', 'a function', fn)
      const signal = options?.signal
      if (signal !== undefined && !(signal instanceof AbortSignal)) throw read.fail('signal', 'an AbortSignal', signal)
      const settings = isPlainObject(options)
        ? cache.get(options, () => retrySettings(resolveRetryOptions(read, 'retry()', options, defaults)))
        : retrySettings(resolveRetryOptions(read, 'retry()', options, defaults))
      return retrier.run(settings, fn, signal)
    } catch (error) {
      return Promise.reject(error)
    }
  }
  app.decorate('retry', run)
  provideRetryInternals(app, { retrier, defaults })
}

/**
 * Retries with exponential backoff (100 ms, ×2, capped at 10 s, decorrelated
 * jitter), only for errors judged transient, stopping at once when the
 * signal aborts, within a per-operation retry budget.
 *
 * @example
 * ```ts
 * await app.register(retry, { maxRetries: 2 })
 * const rows = await app.retry(({ signal }) => app.pg.query('SELECT ...'), { operation: 'player_lookup', signal })
 * ```
 */
export const retry = fp(retryPlugin, { fastify: '5.x', name: PLUGIN })
export default retry
