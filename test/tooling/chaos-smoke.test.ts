// `npm run chaos -- --smoke`, as a user runs it: the whole fault timeline in
// short phases, judged only on the report being complete (every phase, every
// column, every lane of the timeline), and on its time.
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'tap'
import { STEPS } from '../../chaos/lib/chaos.js'
import { LANES } from '../../chaos/lib/timeline-svg.js'
import { REPORT_FILE, SVG_FILE } from '../../chaos/run.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const TSX_LOADER = fileURLToPath(import.meta.resolve('tsx'))

async function runSmoke (outDir: string): Promise<{ code: number | null, output: string }> {
  return await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', TSX_LOADER, '--conditions=fastify-resilience-source', 'chaos/run.ts', '--smoke', `--out=${outDir}`], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (chunk) => { output += chunk })
    child.stderr.on('data', (chunk) => { output += chunk })
    // A hung run must fail here, well before tap's own timeout.
    const timer = setTimeout(() => child.kill('SIGTERM'), 60_000)
    child.once('error', reject)
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ code, output })
    })
  })
}

/** The rows of the markdown table whose header starts with `| <first> | <second> |`. */
function tableRows (markdown: string, first: string, second: string): string[][] {
  const lines = markdown.split('\n')
  const start = lines.findIndex((line) => line.startsWith(`| ${first} | ${second} |`))
  if (start === -1) return []
  const rows: string[][] = []
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break
    rows.push(line.slice(1, -1).split('|').map((cell) => cell.trim()))
  }
  return rows
}

test('npm run chaos -- --smoke writes a complete report and timeline in under 30 s', async (t) => {
  const outDir = mkdtempSync(join(tmpdir(), 'chaos-smoke-'))
  t.teardown(() => rmSync(outDir, { recursive: true, force: true }))
  const startedAt = Date.now()
  const { code, output } = await runSmoke(outDir)
  const elapsedMs = Date.now() - startedAt
  t.equal(code, 0, output)
  t.ok(elapsedMs < 30_000, `ran in ${(elapsedMs / 1000).toFixed(1)} s`)

  const report = readFileSync(join(outDir, REPORT_FILE), 'utf8')
  t.match(report, /^# Chaos run/m)
  t.match(report, /\*\*Smoke run\*\*/, 'says it is a smoke run')
  t.match(report, new RegExp(`!\\[[^\\]]+\\]\\(${SVG_FILE}\\)`), 'embeds the timeline')
  const rows = tableRows(report, 'phase', 'answered')
  t.same(rows.map((row) => row[0]), STEPS.map((step) => step.name), 'a row for each phase, in order')
  for (const row of rows) {
    t.equal(row.length, 9, `${row[0]}: every column`)
    // p99 is n/a in a phase without a single 2xx.
    t.ok(row.slice(1).every((cell, i) => /^\d[\d ]*( \((\d+ %|n\/a)\))?$/.test(cell) || (i === 6 && cell === 'n/a')), `${row[0]}: numbers in every cell: ${row.join(' | ')}`)
  }
  t.ok(Number(rows[0]?.[1]?.replaceAll(' ', '')) > 0, 'the baseline answered requests')
  t.same(tableRows(report, 'phase', 'fault').map((row) => row[0]), STEPS.map((step) => step.name), 'when each phase ran')
  t.match(report, /^- 500s: \*\*\d+\*\* \(must be 0\): (met|missed)\.$/m)
  t.match(report, /^- Lost acknowledged writes: \*\*\d+\*\* of \d+ players written \(must be 0\): (met|missed)\.$/m)

  const svg = readFileSync(join(outDir, SVG_FILE), 'utf8')
  t.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"[^>]*>/)
  t.match(svg, /<\/svg>\n$/)
  for (const lane of LANES) t.ok(svg.includes(`data-lane="${lane.replaceAll('"', '&quot;')}"`), `a lane for ${lane}`)
  for (const step of STEPS.filter((s) => s.shaded)) t.ok(svg.includes(`data-phase="${step.name}"`), `${step.name} is shaded`)
  t.ok((svg.match(/<polyline /g) ?? []).length >= 10, 'the line lanes have data')
  t.ok((svg.match(/<rect [^>]*fill="#59a14f"\/>/g) ?? []).length > 0, 'the breaker and flag bands have data')
})
