/**
 * `npm run chaos`: starts the example app on its own PostgreSQL and Redis,
 * drives steady open-loop traffic through a scripted fault timeline
 * (PostgreSQL stopped then started, Redis paused then resumed, a 4x overload,
 * a flag switched off and on), and writes chaos/REPORT.md with
 * chaos/timeline.svg. Exits with 1 when an answer was a 500 or an
 * acknowledged write was lost.
 *
 * `--smoke`: short phases at a low rate (the test suite runs it; only the
 * report's completeness is judged). `--out=<dir>`: where to write (default chaos/).
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runChaos } from './lib/chaos.js'
import { phaseTotals, reportMarkdown } from './lib/report.js'
import { timelineSvg } from './lib/timeline-svg.js'

export const REPORT_FILE = 'REPORT.md'
export const SVG_FILE = 'timeline.svg'

export interface ChaosArguments { smoke: boolean, outDir: string }

export function parseArguments (argv: readonly string[]): ChaosArguments {
  const parsed: ChaosArguments = { smoke: false, outDir: fileURLToPath(new URL('.', import.meta.url)) }
  for (const arg of argv) {
    if (arg === '--smoke') parsed.smoke = true
    else if (arg.startsWith('--out=')) parsed.outDir = resolve(arg.slice('--out='.length))
    else throw new Error(`unknown argument ${JSON.stringify(arg)} (expected --smoke, --out=<dir>)`)
  }
  return parsed
}

async function main (): Promise<number> {
  const args = parseArguments(process.argv.slice(2))
  const result = await runChaos({ smoke: args.smoke }, (line) => console.log(line))
  mkdirSync(args.outDir, { recursive: true })
  writeFileSync(join(args.outDir, SVG_FILE), timelineSvg(result.timeline, `fastify-resilience example app: chaos timeline${args.smoke ? ' (smoke run)' : ''}`))
  writeFileSync(join(args.outDir, REPORT_FILE), reportMarkdown(result, SVG_FILE))
  const totals = phaseTotals(result)
  const internalErrors = totals.reduce((sum, t) => sum + t.internalErrors, 0)
  console.log(`wrote ${join(args.outDir, REPORT_FILE)} and ${SVG_FILE}: ${internalErrors} 500s, ${result.lostWrites.length} lost acknowledged writes`)
  return !args.smoke && (internalErrors > 0 || result.lostWrites.length > 0) ? 1 : 0
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then((code) => { process.exitCode = code }, (error: unknown) => {
    console.error(`chaos run failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}`)
    process.exitCode = 1
  })
}
