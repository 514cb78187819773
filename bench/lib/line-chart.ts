/**
 * Line charts over time as standalone SVG, for RESULTS.md: panels stacked on
 * one shared x axis, each with its own y scale from 0, and vertical markers
 * (e.g. the moments a capacity step happens) across all of them.
 */
import { escape } from './svg.js'

/** One line of a panel. */
export interface Series {
  label: string
  /** `[x, y]` points, in increasing x; a non-finite y breaks the line. */
  points: ReadonlyArray<readonly [number, number]>
  color: string
  /** Dashed, for reference lines (a capacity, a threshold). */
  dashed?: boolean
}

/** One panel: a y axis and its lines. */
export interface Panel {
  /** Unit of the y axis, e.g. `req/s`. */
  unit: string
  series: readonly Series[]
}

/** A vertical line across every panel at `x`, labelled at the top. */
export interface Marker {
  x: number
  label: string
}

const WIDTH = 760
const LEFT = 60
const RIGHT = 20
const PANEL_HEIGHT = 180
const LEGEND_HEIGHT = 22
const PANEL_GAP = 34

/** Up to about `count` round tick values from 0 to at least `max`. */
function ticks (max: number, count: number): number[] {
  const raw = Math.max(max, 1e-9) / count
  const magnitude = 10 ** Math.floor(Math.log10(raw))
  const step = ([1, 2, 2.5, 5, 10].find((factor) => factor * magnitude >= raw) ?? 10) * magnitude
  const values: number[] = []
  for (let value = 0; value < max + step / 2; value += step) values.push(Number(value.toPrecision(12)))
  if ((values[values.length - 1] as number) < max) values.push(Number((values.length * step).toPrecision(12)))
  return values
}

function label (value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(1)
}

/**
 * Panels of lines over `xMax` units of x (from 0), `xUnit` naming them (e.g.
 * `s`); `markers` are drawn across every panel.
 */
export function lineChart (title: string, xUnit: string, xMax: number, panels: readonly Panel[], markers: readonly Marker[] = []): string {
  const plotWidth = WIDTH - LEFT - RIGHT
  const top = 58
  const x = (value: number): number => LEFT + (Math.min(Math.max(value, 0), xMax) / xMax) * plotWidth
  const parts: string[] = []
  let y0 = top
  for (const panel of panels) {
    // Legend above the panel, wrapped onto more rows when it does not fit.
    let legendX = LEFT
    for (const series of panel.series) {
      const width = 28 + series.label.length * 6.6
      if (legendX > LEFT && legendX + width > WIDTH - RIGHT) {
        legendX = LEFT
        y0 += LEGEND_HEIGHT
      }
      parts.push(
        `<line x1="${legendX}" y1="${y0 + 6}" x2="${legendX + 22}" y2="${y0 + 6}" stroke="${series.color}" stroke-width="2.5"${series.dashed === true ? ' stroke-dasharray="6 4"' : ''}/>`,
        `<text x="${legendX + 28}" y="${y0 + 10}">${escape(series.label)}</text>`
      )
      legendX += width + 18
    }
    const plotTop = y0 + LEGEND_HEIGHT
    const plotBottom = plotTop + PANEL_HEIGHT
    const yMax = Math.max(1e-9, ...panel.series.flatMap((series) => series.points.map(([, value]) => value)).filter(Number.isFinite))
    const yTicks = ticks(yMax, 5)
    const yTop = yTicks[yTicks.length - 1] as number
    const y = (value: number): number => plotBottom - (value / yTop) * PANEL_HEIGHT
    for (const tick of yTicks) {
      parts.push(
        `<line x1="${LEFT}" y1="${y(tick).toFixed(1)}" x2="${WIDTH - RIGHT}" y2="${y(tick).toFixed(1)}" stroke="#ddd"/>`,
        `<text x="${LEFT - 6}" y="${(y(tick) + 4).toFixed(1)}" text-anchor="end" fill="#555">${label(tick)}</text>`
      )
    }
    parts.push(
      `<text x="14" y="${((plotTop + plotBottom) / 2).toFixed(1)}" fill="#555" transform="rotate(-90 14 ${((plotTop + plotBottom) / 2).toFixed(1)})" text-anchor="middle">${escape(panel.unit)}</text>`,
      `<rect x="${LEFT}" y="${plotTop}" width="${plotWidth}" height="${PANEL_HEIGHT}" fill="none" stroke="#999"/>`
    )
    for (const marker of markers) {
      parts.push(`<line x1="${x(marker.x).toFixed(1)}" y1="${plotTop}" x2="${x(marker.x).toFixed(1)}" y2="${plotBottom}" stroke="#888" stroke-dasharray="2 3"/>`)
    }
    for (const series of panel.series) {
      // One path, restarted after each missing point.
      let d = ''
      let drawing = false
      for (const [px, py] of series.points) {
        if (!Number.isFinite(py) || !Number.isFinite(px)) {
          drawing = false
          continue
        }
        d += `${drawing ? 'L' : 'M'}${x(px).toFixed(1)} ${y(py).toFixed(1)} `
        drawing = true
      }
      if (d !== '') parts.push(`<path d="${d.trim()}" fill="none" stroke="${series.color}" stroke-width="${series.dashed === true ? 1.5 : 2.5}"${series.dashed === true ? ' stroke-dasharray="6 4"' : ''}/>`)
    }
    y0 = plotBottom + PANEL_GAP
  }
  // The x axis under the last panel, and the markers' labels over the first.
  const axisY = y0 - PANEL_GAP
  for (const tick of ticks(xMax, 10).filter((value) => value <= xMax)) {
    parts.push(`<text x="${x(tick).toFixed(1)}" y="${axisY + 16}" text-anchor="middle" fill="#555">${label(tick)}</text>`)
  }
  parts.push(`<text x="${WIDTH - RIGHT}" y="${axisY + 30}" text-anchor="end" fill="#555">${escape(xUnit)}</text>`)
  for (const marker of markers) {
    parts.push(`<text x="${(x(marker.x) + 4).toFixed(1)}" y="${top - 8}" fill="#444">${escape(marker.label)}</text>`)
  }
  const height = axisY + 40
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${height}" fill="white"/>`,
    `<text x="10" y="22" font-size="15" font-weight="bold">${escape(title)}</text>`,
    ...parts,
    '</svg>',
    ''
  ].join('\n')
}
