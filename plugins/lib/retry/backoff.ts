import { ExponentialBackoff, decorrelatedJitterGenerator } from 'cockatiel'
import type { GeneratorFn, IBackoffFactory, IExponentialBackoffOptions } from 'cockatiel'

/** How retry delays are spread. */
export type Jitter = 'decorrelated' | 'full' | 'none'

/** The delays between attempts, every field resolved (see {@link createBackoff}). */
export interface BackoffSettings {
  initialDelayMs: number
  multiplier: number
  maxDelayMs: number
  jitter: Jitter
}

/** Attempt n (0-based) waits initialDelayMs × multiplier^n, capped at maxDelayMs. */
const noJitter: GeneratorFn<number> = (attempt = 0, options) => [
  Math.min(options.maxDelay, options.initialDelay * options.exponent ** attempt),
  attempt + 1
]

/** Uniform in [0, the no-jitter delay]. */
const fullJitter: GeneratorFn<number> = (attempt = 0, options) => {
  const [delay, next] = noJitter(attempt, options)
  return [Math.random() * delay, next]
}

const GENERATORS: Record<Jitter, GeneratorFn<unknown>> = {
  none: noJitter as GeneratorFn<unknown>,
  full: fullJitter as GeneratorFn<unknown>,
  // Polly's decorrelated jitter V2, as cockatiel implements it, with `multiplier` as exponent.
  decorrelated: decorrelatedJitterGenerator as GeneratorFn<unknown>
}

/**
 * A cockatiel `ExponentialBackoff` for these settings. Its cockatiel
 * generators ignore the exponent for 'none' and 'full', so those two are ours.
 *
 * Bounds of attempt n (0-based), all capped at `maxDelayMs`:
 * - 'none': exactly initialDelayMs × multiplier^n;
 * - 'full': between 0 and that;
 * - 'decorrelated': between 0 and initialDelayMs × (f(n+1) − f(n−1)) / 1.4,
 *   with f(t) = multiplier^t × tanh(√(4t)) and f(−1) = 0; its median grows
 *   like multiplier^n but successive delays are not correlated.
 */
export function createBackoff (settings: BackoffSettings): IBackoffFactory<unknown> {
  const options: Partial<IExponentialBackoffOptions<unknown>> = {
    generator: GENERATORS[settings.jitter],
    initialDelay: settings.initialDelayMs,
    maxDelay: settings.maxDelayMs,
    exponent: settings.multiplier
  }
  return new ExponentialBackoff(options)
}
