import { Histogram } from 'prom-client'
import type { HistogramConfiguration } from 'prom-client'

/** A value as prom-client's text exposition reads it: `labels` hold `le`, `sharedLabels` the series. */
interface ExportedValue {
  labels: Record<string, string | number>
  sharedLabels: Record<string, string>
  value: number
  metricName: string
  exemplar: null
}

interface Exported { values: ExportedValue[] }

/** The observations of one label set: observing is plain arithmetic, no hashing. */
export class HistogramTally {
  readonly labels: Record<string, string>
  private readonly bounds: readonly number[]
  /** Per upper bound, not cumulative; the last slot counts values above every bound. */
  private counts: number[]
  private sum = 0
  private count = 0

  constructor (labels: Record<string, string>, bounds: readonly number[]) {
    this.labels = labels
    this.bounds = bounds
    this.counts = new Array<number>(bounds.length + 1).fill(0)
  }

  observe (value: number): void {
    let slot = 0
    while (slot < this.bounds.length && value > (this.bounds[slot] as number)) slot++
    this.counts[slot]++
    this.sum += value
    this.count++
  }

  clear (): void {
    this.counts = new Array<number>(this.bounds.length + 1).fill(0)
    this.sum = 0
    this.count = 0
  }

  /** The `_bucket` (cumulative, then `+Inf`), `_sum` and `_count` values, as prom-client exports them. */
  exported (name: string): ExportedValue[] {
    if (this.count === 0) return []
    const value = (labels: Record<string, string | number>, metricName: string, count: number): ExportedValue =>
      ({ labels, sharedLabels: this.labels, value: count, metricName, exemplar: null })
    let cumulative = 0
    const buckets = this.bounds.map((bound, slot) => {
      cumulative += this.counts[slot] as number
      return value({ le: bound }, `${name}_bucket`, cumulative)
    })
    return [
      ...buckets,
      value({ le: '+Inf' }, `${name}_bucket`, this.count),
      value({}, `${name}_sum`, this.sum),
      value({}, `${name}_count`, this.count)
    ]
  }
}

/**
 * A prom-client histogram that also reports tallies: hot paths call
 * `tally.observe(value)`, a few additions, instead of prom-client's `observe`
 * (which validates and hashes the labels each time); the tallies are read at
 * scrape time. Tallies are shared per label set, like prom-client's series.
 */
export class TalliedHistogram<L extends string> extends Histogram<L> {
  private readonly metricName: string
  private readonly tallyLabelNames: readonly L[]
  private readonly bounds: readonly number[]
  private readonly tallies = new Map<string, HistogramTally>()

  constructor (config: HistogramConfiguration<L> & { buckets: number[], labelNames: readonly L[] }) {
    super(config)
    this.metricName = config.name
    this.tallyLabelNames = config.labelNames
    this.bounds = [...config.buckets].sort((a, b) => a - b)
  }

  /** The tally of a label set (every label name given). */
  tally (labels: Record<L, string>): HistogramTally {
    const key = this.tallyLabelNames.map((name) => labels[name]).join('\u0000')
    let tally = this.tallies.get(key)
    if (tally === undefined) {
      tally = new HistogramTally({ ...labels }, this.bounds)
      this.tallies.set(key, tally)
    }
    return tally
  }

  /**
   * What prom-client's registry formats (and `get()` reads): its own series,
   * then the tallies. Not in prom-client's public types, hence the pinned
   * `~15.1` range and a test that fails if the registry stops calling it.
   */
  async getForPromString (): Promise<Exported> {
    const base = await (Histogram.prototype as unknown as { getForPromString: () => Promise<Exported> }).getForPromString.call(this)
    for (const tally of this.tallies.values()) base.values.push(...tally.exported(this.metricName))
    return base
  }

  override reset (): void {
    super.reset()
    // prom-client's constructor calls reset() before this class's fields exist.
    for (const tally of (this.tallies as Map<string, HistogramTally> | undefined)?.values() ?? []) tally.clear()
  }
}
