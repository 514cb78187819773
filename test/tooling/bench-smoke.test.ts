// The benchmarks' smoke mode: every benchmark runs for a second or
// two, so they cannot rot unnoticed. Nothing here judges speed: only that each
// benchmark ran to the end and reported real, finite measurements.
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { childEnv } from '../fixtures/child-env.js'
import { testDatabaseUrl } from '../fixtures/services.js'

const run = promisify(execFile)
const TSX_LOADER = import.meta.resolve('tsx')

/** The data rows (not headers) of the markdown tables under `## title`, up to the next `## `. */
function tableRows (document: string, title: string): string[][] {
  const start = document.indexOf(`## ${title}\n`)
  if (start === -1) return []
  const end = document.indexOf('\n## ', start + 1)
  const lines = document.slice(start, end === -1 ? undefined : end).split('\n')
  const isRow = (line: string | undefined): boolean => line?.startsWith('| ') === true && !line.startsWith('| ---')
  return lines
    .filter((line, index) => isRow(line) && !(lines[index + 1]?.startsWith('| ---') ?? false))
    .map((line) => line.slice(2, -2).split(' | '))
}

t.setTimeout(240_000)

t.test('npm run bench -- --smoke runs every benchmark and reports finite numbers', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'bench-smoke-'))
  t.teardown(() => rmSync(out, { recursive: true, force: true }))
  const { stdout } = await run(process.execPath, ['--import', TSX_LOADER, '--conditions=fastify-resilience-source', 'bench/run.ts', '--smoke', `--out=${out}`], {
    env: childEnv({ RESILIENCE_TEST_DATABASE_URL: testDatabaseUrl() }),
    timeout: 200_000,
    maxBuffer: 16 * 1024 * 1024
  })
  const document = readFileSync(join(out, 'RESULTS.md'), 'utf8')
  t.match(document, /Smoke run/, 'marked as a smoke run')
  for (const [title, chart] of [['Overhead', 'overhead.svg'], ['Policy cost', 'policy.svg'], ['Overload', 'overload.svg']]) {
    t.match(document, new RegExp(`^## ${title}$`, 'm'), `${title}: section written`)
    const numbers = tableRows(document, title as string).flat().filter((cell) => /^[\d\s.]+( %|x| ms)?$/.test(cell))
    t.ok(numbers.length >= 4, `${title}: its tables hold measured numbers (${numbers.length})`)
    t.notMatch(document.slice(document.indexOf(`## ${title}`)), /\bNaN\b|Infinity/, `${title}: no NaN or Infinity`)
    t.match(readFileSync(join(out, chart as string), 'utf8'), /^<svg [^>]*>[\s\S]*<rect [\s\S]*<\/svg>\n$/, `${title}: ${chart} written`)
  }
  t.match(readFileSync(join(out, 'overload-step.svg'), 'utf8'), /^<svg [^>]*>[\s\S]*<path d="M[\s\S]*<\/svg>\n$/, 'Overload: overload-step.svg written, with lines')
  t.match(document, /^### Capacity step$/m, 'Overload: the capacity step reported')
  t.match(document, /^### CPU-bound route$/m, 'Overload: the CPU-bound route reported')
  t.equal(stdout.trim().split('\n').length >= 3, true, 'a headline per benchmark on stdout')
})
