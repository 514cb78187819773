/**
 * The chaos run as one standalone SVG: a lane per signal, one shared time
 * axis, the fault phases shaded across every lane (no dependency, no fonts
 * beyond sans-serif).
 */
import { quantile } from '../../bench/lib/stats.js'
import type { Phase, Timeline, Window } from './timeline.js'
import { WINDOW_MS } from './timeline.js'

interface Series { label: string, color: string, values: Array<number | undefined>, dashed?: boolean }
interface Band { label: string, value: (window: Window) => number | undefined, states: Array<{ value: number, label: string, color: string }> }

/** The lanes, top to bottom, with what each one draws. */
export const LANES = ['answers/s by status', 'answers/s by tier', 'breaker "database"', 'in flight vs limit', 'latency p50 / p99 (ms)', 'flag player_lookup'] as const

const WIDTH = 1000
const LEFT = 170
const RIGHT = 20
const TOP = 50
const LANE_HEIGHT = 80
const BAND_HEIGHT = 26
const GAP = 22

function escape (text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;')
}

function perSecond (count: number): number {
  return count * (1000 / WINDOW_MS)
}

/** A scale's upper end: 1, 2 or 5 times a power of ten. */
function niceMax (value: number): number {
  if (!(value > 0)) return 1
  const power = 10 ** Math.floor(Math.log10(value))
  return ([1, 2, 5, 10].find((step) => step * power >= value) ?? 10) * power
}

export function timelineSvg (timeline: Timeline, title: string): string {
  const windows = timeline.windows
  const durationMs = Math.max(WINDOW_MS, windows.length * WINDOW_MS)
  const plotWidth = WIDTH - LEFT - RIGHT
  const x = (ms: number): number => LEFT + (ms / durationMs) * plotWidth
  const parts: string[] = []
  let y = TOP

  const lineLane = (label: string, unit: string, series: Series[]): void => {
    const max = niceMax(Math.max(0, ...series.flatMap((s) => s.values.filter((v): v is number => v !== undefined && Number.isFinite(v)))))
    const yOf = (value: number): number => y + LANE_HEIGHT - (Math.min(value, max) / max) * LANE_HEIGHT
    parts.push(
      `<text x="${LEFT - 8}" y="${y + 14}" text-anchor="end" font-weight="bold">${escape(label)}</text>`,
      `<text x="${LEFT - 8}" y="${y + 30}" text-anchor="end" fill="#555">0–${max} ${escape(unit)}</text>`,
      `<rect x="${LEFT}" y="${y}" width="${plotWidth}" height="${LANE_HEIGHT}" fill="none" stroke="#ccc" data-lane="${escape(label)}"/>`
    )
    series.forEach((s, index) => {
      // A gap where there is no value (a scrape that did not answer), not a line through it.
      const runs: string[][] = [[]]
      s.values.forEach((value, i) => {
        if (value === undefined || !Number.isFinite(value)) {
          if ((runs.at(-1) as string[]).length > 0) runs.push([])
          return
        }
        (runs.at(-1) as string[]).push(`${x((i + 0.5) * WINDOW_MS).toFixed(1)},${yOf(value).toFixed(1)}`)
      })
      for (const run of runs.filter((r) => r.length > 0)) {
        parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="1.5"${s.dashed === true ? ' stroke-dasharray="6 4"' : ''} points="${run.join(' ')}"/>`)
      }
      parts.push(`<text x="${LEFT - 8}" y="${y + 46 + index * 12}" text-anchor="end" fill="${s.color}" font-size="10">${escape(s.label)}</text>`)
    })
    y += LANE_HEIGHT + GAP
  }

  const bandLane = (band: Band): void => {
    parts.push(
      `<text x="${LEFT - 8}" y="${y + 17}" text-anchor="end" font-weight="bold">${escape(band.label)}</text>`,
      `<rect x="${LEFT}" y="${y}" width="${plotWidth}" height="${BAND_HEIGHT}" fill="none" stroke="#ccc" data-lane="${escape(band.label)}"/>`
    )
    // One rectangle per run of windows in the same state (a missing sample is a gap).
    let runStart = 0
    windows.forEach((window, i) => {
      const value = band.value(window)
      if (i + 1 < windows.length && band.value(windows[i + 1] as Window) === value) return
      const state = band.states.find((s) => s.value === value)
      if (state !== undefined) {
        parts.push(`<rect x="${x(runStart * WINDOW_MS).toFixed(1)}" y="${y}" width="${(x((i + 1) * WINDOW_MS) - x(runStart * WINDOW_MS)).toFixed(1)}" height="${BAND_HEIGHT}" fill="${state.color}"/>`)
      }
      runStart = i + 1
    })
    const legend = band.states.map((s) => `<tspan fill="${s.color}">■</tspan> ${escape(s.label)}`).join('  ')
    parts.push(`<text x="${LEFT + plotWidth}" y="${y + BAND_HEIGHT + 12}" text-anchor="end" font-size="10">${legend}</text>`)
    y += BAND_HEIGHT + GAP
  }

  const values = (pick: (window: Window) => number | undefined): Array<number | undefined> => windows.map(pick)
  lineLane(LANES[0], 'answers/s', [
    { label: '2xx', color: '#59a14f', values: values((w) => perSecond(w.ok)) },
    { label: '503 refused', color: '#f28e2b', values: values((w) => perSecond(w.refused)) },
    { label: '500 and other 5xx', color: '#e15759', values: values((w) => perSecond(w.internalErrors + w.otherErrors)) },
    { label: 'no answer', color: '#666', values: values((w) => perSecond(w.failed)) }
  ])
  lineLane(LANES[1], 'answers/s', [
    { label: 'primary', color: '#59a14f', values: values((w) => perSecond(w.primary)) },
    { label: 'cache', color: '#4e79a7', values: values((w) => perSecond(w.cache)) },
    { label: 'default', color: '#f28e2b', values: values((w) => perSecond(w.default)) }
  ])
  bandLane({
    label: LANES[2],
    value: (w) => w.breaker,
    states: [{ value: 0, label: 'closed', color: '#59a14f' }, { value: 1, label: 'open', color: '#e15759' }, { value: 2, label: 'half-open', color: '#edc948' }]
  })
  lineLane(LANES[3], 'requests', [
    { label: 'in flight', color: '#4e79a7', values: values((w) => w.inFlight) },
    { label: 'limit', color: '#e15759', values: values((w) => w.limit), dashed: true }
  ])
  lineLane(LANES[4], 'ms', [
    { label: 'p50', color: '#4e79a7', values: values((w) => w.latenciesMs.length === 0 ? undefined : quantile(w.latenciesMs, 0.5)) },
    { label: 'p99', color: '#b07aa1', values: values((w) => w.latenciesMs.length === 0 ? undefined : quantile(w.latenciesMs, 0.99)) }
  ])
  bandLane({
    label: LANES[5],
    value: (w) => w.flag,
    states: [{ value: 1, label: 'on', color: '#59a14f' }, { value: 0, label: 'off', color: '#e15759' }]
  })

  const bottom = y - GAP
  // Fault phases shaded over every lane, named above the first.
  const shading = timeline.phases.filter((phase: Phase) => phase.shaded).map((phase) => {
    const left = x(phase.startAt)
    const width = Math.max(1, x(phase.endAt) - left)
    return [
      `<rect x="${left.toFixed(1)}" y="${TOP - 14}" width="${width.toFixed(1)}" height="${bottom - TOP + 14}" fill="#999" fill-opacity="0.15" data-phase="${escape(phase.name)}"/>`,
      `<line x1="${left.toFixed(1)}" y1="${TOP - 14}" x2="${left.toFixed(1)}" y2="${bottom}" stroke="#999" stroke-dasharray="2 3"/>`,
      `<text x="${(left + 3).toFixed(1)}" y="${TOP - 4}" font-size="10" fill="#333">${escape(phase.name)}</text>`
    ].join('\n')
  })
  const ticks: string[] = []
  const stepS = niceMax(durationMs / 1000 / 10)
  for (let s = 0; s * 1000 <= durationMs; s += stepS) {
    ticks.push(`<line x1="${x(s * 1000).toFixed(1)}" y1="${bottom}" x2="${x(s * 1000).toFixed(1)}" y2="${bottom + 5}" stroke="#555"/>`,
      `<text x="${x(s * 1000).toFixed(1)}" y="${bottom + 17}" text-anchor="middle" font-size="10">${s} s</text>`)
  }
  const height = bottom + 30
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${height}" fill="white"/>`,
    `<text x="10" y="20" font-size="15" font-weight="bold">${escape(title)}</text>`,
    ...shading,
    ...parts,
    ...ticks,
    '</svg>',
    ''
  ].join('\n')
}
