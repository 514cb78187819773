import type { OptionReader } from '../plugin/options.js'
import { ADAPTIVE_DEFAULTS } from './adaptive-limit.js'
import type { AdaptiveLimitOptions, AdaptiveLimitSettings } from './adaptive-limit.js'

const KEYS: ReadonlyArray<keyof AdaptiveLimitOptions> = ['minLimit', 'maxLimit', 'initialLimit', 'windowMs', 'minSamples', 'rttTolerance', 'smoothing', 'probeIntervalMs']

/** Reads `adaptive` (an object, or `{}` for `limit: 'adaptive'`); `maxConcurrent` stays the hard ceiling. */
export function readAdaptiveOptions (read: OptionReader, value: unknown, maxConcurrent: number): AdaptiveLimitSettings {
  const opts = read.object<AdaptiveLimitOptions>('adaptive', value, KEYS)
  const maxLimit = read.number('adaptive.maxLimit', opts.maxLimit, maxConcurrent, { min: 1, max: maxConcurrent, integer: true })
  return {
    maxLimit,
    minLimit: read.number('adaptive.minLimit', opts.minLimit, Math.min(ADAPTIVE_DEFAULTS.minLimit, maxLimit), { min: 1, max: maxLimit, integer: true }),
    initialLimit: read.number('adaptive.initialLimit', opts.initialLimit, ADAPTIVE_DEFAULTS.initialLimit, { min: 1, integer: true }),
    windowMs: read.number('adaptive.windowMs', opts.windowMs, ADAPTIVE_DEFAULTS.windowMs, { min: 1 }),
    minSamples: read.number('adaptive.minSamples', opts.minSamples, ADAPTIVE_DEFAULTS.minSamples, { min: 1, integer: true }),
    rttTolerance: read.number('adaptive.rttTolerance', opts.rttTolerance, ADAPTIVE_DEFAULTS.rttTolerance, { min: 1 }),
    smoothing: read.number('adaptive.smoothing', opts.smoothing, ADAPTIVE_DEFAULTS.smoothing, { min: 0.01, max: 1 }),
    probeIntervalMs: read.number('adaptive.probeIntervalMs', opts.probeIntervalMs, ADAPTIVE_DEFAULTS.probeIntervalMs, { min: 1000 })
  }
}
