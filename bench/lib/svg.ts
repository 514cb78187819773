/** Horizontal bar charts as standalone SVG, for RESULTS.md (no dependency, no fonts beyond sans-serif). */

export interface Bar {
  label: string
  value: number
  /** Text after the bar; defaults to the value. */
  note?: string
}

export interface BarGroup {
  /** Group heading, e.g. `4x capacity`; empty for none. */
  title: string
  bars: Bar[]
}

const COLORS = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1']

/** `text` made safe inside SVG text and attribute values. */
export function escape (text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;')
}

/**
 * Groups of horizontal bars on one linear scale starting at 0. Bars with the
 * same label share a colour across groups.
 */
export function barChart (title: string, unit: string, groups: readonly BarGroup[]): string {
  // About 7 px per character of 12 px sans-serif: wide enough for the longest label.
  const longest = Math.max(...groups.flatMap((group) => group.bars.map((bar) => bar.label.length)), 10)
  const labelWidth = Math.ceil(longest * 7 + 16)
  const noteWidth = 130
  const width = labelWidth + noteWidth + 420
  const barHeight = 18
  const gap = 6
  const groupGap = 14
  const top = 40
  const plotWidth = width - labelWidth - noteWidth - 20
  const max = Math.max(1e-9, ...groups.flatMap((group) => group.bars.map((bar) => bar.value)).filter(Number.isFinite))
  const colorOf = new Map<string, string>()
  for (const bar of groups.flatMap((group) => group.bars)) {
    if (!colorOf.has(bar.label)) colorOf.set(bar.label, COLORS[colorOf.size % COLORS.length] as string)
  }
  const parts: string[] = []
  let y = top
  for (const group of groups) {
    if (group.title !== '') {
      parts.push(`<text x="10" y="${y + 13}" font-weight="bold">${escape(group.title)}</text>`)
      y += barHeight + gap
    }
    for (const bar of group.bars) {
      const value = Number.isFinite(bar.value) ? bar.value : 0
      const length = Math.max(1, (value / max) * plotWidth)
      parts.push(
        `<text x="${labelWidth - 8}" y="${y + 13}" text-anchor="end">${escape(bar.label)}</text>`,
        `<rect x="${labelWidth}" y="${y}" width="${length.toFixed(1)}" height="${barHeight}" fill="${colorOf.get(bar.label) ?? COLORS[0]}"/>`,
        `<text x="${(labelWidth + length + 6).toFixed(1)}" y="${y + 13}">${escape(bar.note ?? String(bar.value))}</text>`
      )
      y += barHeight + gap
    }
    y += groupGap
  }
  const height = y + 10
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="10" y="22" font-size="15" font-weight="bold">${escape(title)}</text>`,
    `<text x="${width - 10}" y="22" text-anchor="end" fill="#555">${escape(unit)}</text>`,
    ...parts,
    '</svg>',
    ''
  ].join('\n')
}
