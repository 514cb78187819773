/**
 * `npm run bench`: runs the benchmarks one after the other and writes
 * bench/RESULTS.md (with its SVG charts) from what they measured.
 *
 *   npm run bench                          all three, full length (about 10 minutes)
 *   npm run bench -- --only=policy         one of overhead, policy, overload (comma-separated)
 *   npm run bench -- --smoke --out=<dir>   a second or two each, judging nothing (the test suite's check)
 *
 * A full run writes bench/RESULTS.md; `--out=<dir>` writes there instead;
 * otherwise (`--only`, `--smoke`) the results go to stdout. Benchmarks never
 * judge speed in tests.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { machineDescription } from './lib/machine.js'
import type { BenchOptions, Section } from './lib/report.js'
import { overhead } from './overhead.js'
import { overload } from './overload.js'
import { policy } from './policy.js'

const BENCHMARKS: Record<string, (options: BenchOptions) => Promise<Section>> = { overhead, policy, overload }

const { values } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: false },
    only: { type: 'string' },
    out: { type: 'string' }
  }
})
const names = values.only === undefined ? Object.keys(BENCHMARKS) : values.only.split(',').map((name) => name.trim())
for (const name of names) {
  if (!(name in BENCHMARKS)) throw new TypeError(`--only: unknown benchmark "${name}" (known: ${Object.keys(BENCHMARKS).join(', ')})`)
}
// bench/RESULTS.md is written by a full run only: a partial or smoke run
// prints its sections instead, unless given a folder of its own.
const outDir = values.out !== undefined
  ? resolve(values.out)
  : values.smoke || values.only !== undefined ? undefined : fileURLToPath(new URL('.', import.meta.url))

const started = new Date()
const options: BenchOptions = { smoke: values.smoke, log: (line) => console.error(line) }
const sections: Section[] = []
for (const name of names) {
  console.error(`== ${name}${values.smoke ? ' (smoke)' : ''}`)
  sections.push(await (BENCHMARKS[name] as (options: BenchOptions) => Promise<Section>)(options))
}

const headlines = sections.flatMap((section) => section.headlines)
const document = [
  '# Benchmark results',
  '',
  values.smoke
    ? '**Smoke run: every benchmark ran for a second or two. These numbers judge nothing.**'
    : 'Written by `npm run bench` (which builds `dist/` first); every figure below comes from that run on this machine.',
  '',
  ...machineDescription(started),
  `- Command: \`npm run bench${process.argv.slice(2).length > 0 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}\``,
  '',
  '## Headlines',
  '',
  ...headlines.map((line) => `- ${line}`),
  '',
  ...sections.flatMap((section) => [`## ${section.title}`, '', `Reproduce: \`${section.command}\``, '', section.markdown, ''])
].join('\n')

if (outDir !== undefined) {
  mkdirSync(outDir, { recursive: true })
  writeFileSync(join(outDir, 'RESULTS.md'), document)
  for (const section of sections) {
    for (const [file, svg] of Object.entries(section.charts)) writeFileSync(join(outDir, file), svg)
  }
  console.error(`wrote ${join(outDir, 'RESULTS.md')}`)
  console.log(headlines.join('\n'))
} else {
  console.log(document)
}
