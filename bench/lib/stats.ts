/** Small statistics for benchmark rounds: medians, spreads, percentiles. */

/** The value at quantile `q` (0..1) of `values`, nearest-rank on a sorted copy. */
export function quantile (values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[rank] as number
}

/** Median of `values` (mean of the middle two for an even count). */
export function median (values: readonly number[]): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] as number : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
}

/** Spread of rounds around their median, as `min–max`. */
export function spread (values: readonly number[], format: (value: number) => string): string {
  if (values.length === 0) return 'n/a'
  return `${format(Math.min(...values))}–${format(Math.max(...values))}`
}

/** `12 345` style thousands, no decimals. */
export function integer (value: number): string {
  return Number.isFinite(value) ? Math.round(value).toLocaleString('en-US').replaceAll(',', ' ') : 'n/a'
}

/** A number with `digits` decimals. */
export function fixed (value: number, digits = 2): string {
  return Number.isFinite(value) ? value.toFixed(digits) : 'n/a'
}

/** A ratio as a percentage, `97.3 %`. */
export function percent (ratio: number, digits = 1): string {
  return Number.isFinite(ratio) ? `${(ratio * 100).toFixed(digits)} %` : 'n/a'
}

/** Rotates `items` by `round`, so that interleaved rounds do not always run the same candidate first. */
export function rotate<T> (items: readonly T[], round: number): T[] {
  const shift = round % Math.max(1, items.length)
  return [...items.slice(shift), ...items.slice(0, shift)]
}
