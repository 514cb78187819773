export { metrics } from './metrics.js'
export type { MetricsOptions } from './metrics.js'
export * from './errors.js'
