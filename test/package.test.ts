import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'
import { test } from 'tap'

const root = fileURLToPath(new URL('..', import.meta.url))
const run = promisify(execFile)

test('npm run build emits every entry of the exports map, with declarations, importable by package name', async (t) => {
  await run(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { cwd: root })
  const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    name: string
    exports: Record<string, string | { types: string, default: string }>
  }
  const entries = Object.entries(manifest.exports).filter(([subpath]) => subpath !== './package.json')
  t.ok(entries.length >= 3, 'the root entry and one per plugin')
  for (const [subpath, target] of entries) {
    if (typeof target === 'string') {
      t.fail(`${subpath} has no types condition`)
      continue
    }
    t.ok(existsSync(new URL(target.types, new URL('../', import.meta.url))), `${subpath}: ${target.types} exists`)
    const specifier = subpath === '.' ? manifest.name : `${manifest.name}/${subpath.slice(2)}`
    // Self-reference by package name goes through the exports map, as a user's import does.
    const loaded = await import(specifier) as Record<string, unknown>
    t.ok(Object.keys(loaded).length > 0, `${specifier} exports something`)
  }
  const rootEntry = await import(manifest.name) as Record<string, unknown>
  t.type(rootEntry.metrics, 'function', 'the root entry exports the metrics plugin')
  t.type(rootEntry.isCircuitOpenError, 'function', 'the root entry exports the error guards')
  t.match(readFileSync(new URL('../dist/metrics.d.ts', import.meta.url), 'utf8'), /metricsRegistry: Registry/,
    'the app.metricsRegistry decorator type ships with the plugin')
})
