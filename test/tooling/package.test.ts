import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'
import { test } from 'tap'

const root = fileURLToPath(new URL('../..', import.meta.url))
const run = promisify(execFile)

/** The export names of `specifier` as a plain Node.js process sees them (plus `__from_dist` if it came from dist/). */
async function exportsOf (specifier: string): Promise<string[]> {
  const script = `const url = import.meta.resolve(${JSON.stringify(specifier)}); const m = await import(url); console.log(JSON.stringify([...Object.keys(m), ...(url.includes('/dist/') ? ['__from_dist'] : [])]))`
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => key !== 'NODE_OPTIONS'))
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: root, env })
  return JSON.parse(stdout) as string[]
}

test('npm run build emits every entry of the exports map, with declarations, importable by package name', async (t) => {
  await run(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { cwd: root })
  const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
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
    t.ok(existsSync(new URL(target.types, new URL('../../', import.meta.url))), `${subpath}: ${target.types} exists`)
    const specifier = subpath === '.' ? manifest.name : `${manifest.name}/${subpath.slice(2)}`
    // Self-reference by package name goes through the exports map, as a user's import does;
    // in a plain node process (no source condition) it must load the built dist/.
    const exported = await exportsOf(specifier)
    t.ok(exported.length > 0, `${specifier} exports something`)
    t.ok(exported.includes('__from_dist'), `${specifier} is served from dist/`)
  }
  const rootEntry = await exportsOf(manifest.name)
  t.ok(rootEntry.includes('metrics'), 'the root entry exports the metrics plugin')
  t.ok(rootEntry.includes('isCircuitOpenError'), 'the root entry exports the error guards')
  t.ok(rootEntry.includes('default'), 'the root entry\'s default export is the umbrella plugin')
  t.match(readFileSync(new URL('../../dist/metrics.d.ts', import.meta.url), 'utf8'), /metricsRegistry: Registry/,
    'the app.metricsRegistry decorator type ships with the plugin')
})
