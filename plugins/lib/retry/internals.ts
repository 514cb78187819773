import type { FastifyInstance } from 'fastify'
import type { Retrier } from './retrier.js'
import type { ResolvedRetryOptions } from './settings.js'

/** What the retry plugin shares with the per-route pipeline, and nobody else. */
export interface RetryInternals {
  retrier: Retrier
  defaults: ResolvedRetryOptions
}

const kRetryInternals = Symbol('fastify-resilience.retry-internals')

/** Called by the retry plugin: makes its retrier and defaults reachable from `app` and its children. */
export function provideRetryInternals (app: FastifyInstance, internals: RetryInternals): void {
  app.decorate(kRetryInternals, internals)
}

/** The retry plugin's retrier and defaults, or undefined if it is not registered. */
export function retryInternalsOf (app: FastifyInstance): RetryInternals | undefined {
  return (app as unknown as { [kRetryInternals]?: RetryInternals })[kRetryInternals]
}
