/**
 * What a user gets from the registry: the package packed with `npm pack` (its
 * `prepack` build included), installed into a fresh project outside this
 * repository that has fastify but not the optional ioredis peer, then
 * (a) type-checked as a user's TypeScript program with NodeNext, `strict` and
 * `skipLibCheck: false`, (b) run as ESM with plain node, and (c) loaded with
 * `require()` from CommonJS. The fixture programs are in
 * test/fixtures/package-consumer/.
 *
 * The package is packed from a copy of the repository's sources (in a
 * temporary folder, its node_modules linked), so the test neither reads nor
 * rewrites this checkout's dist/, which test/tooling/package.test.ts builds at the
 * same time.
 */
import { execFile } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { createRequire, isBuiltin } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { childEnv } from '../fixtures/child-env.js'

// Packing builds with tsc, the install may reach the registry, and the
// type-check reads every declaration file: minutes on a busy machine at worst.
t.setTimeout(300_000)

const root = fileURLToPath(new URL('../..', import.meta.url))
const fixtures = fileURLToPath(new URL('../fixtures/package-consumer/', import.meta.url))
const rootRequire = createRequire(join(root, 'package.json'))
const work = mkdtempSync(join(tmpdir(), 'fastify-resilience-pack-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))
const stage = join(work, 'stage')
const consumer = join(work, 'consumer')
const installed = join(consumer, 'node_modules', 'fastify-resilience')

interface Manifest {
  private?: boolean
  license?: string
  exports: Record<string, string | Record<string, string>>
  dependencies?: Record<string, string>
  peerDependencies?: Record<string, string>
  peerDependenciesMeta?: Record<string, { optional?: boolean }>
}

/** Runs a command; on failure throws an error that carries its whole output. */
async function run (command: string, args: string[], cwd: string, timeoutMs = 180_000): Promise<{ stdout: string, stderr: string, seconds: number }> {
  const started = Date.now()
  return await new Promise((resolve, reject) => {
    execFile(command, args, { cwd, env: childEnv({}), timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const seconds = (Date.now() - started) / 1000
      if (error === null) {
        resolve({ stdout, stderr, seconds })
        return
      }
      const how = error.killed ? `was killed after ${timeoutMs} ms` : `exited with ${String(error.code ?? error.signal)}`
      // tap prints these properties in full under the failure, one block each.
      reject(Object.assign(new Error(`\`${[command, ...args].join(' ')}\` ${how} after ${seconds.toFixed(1)} s`), {
        cwd,
        stdout: tail(stdout),
        stderr: tail(stderr)
      }))
    })
  })
}

function tail (text: string, max = 12_000): string {
  return text.length <= max ? text : `[... ${text.length - max} characters cut]\n${text.slice(-max)}`
}

/** The one JSON line a fixture program prints last. */
function lastJsonLine (stdout: string): Record<string, unknown> {
  const line = stdout.trim().split('\n').at(-1) ?? ''
  try {
    return JSON.parse(line) as Record<string, unknown>
  } catch {
    throw new Error(`expected a JSON line from the program, got:\n${tail(stdout)}`)
  }
}

function filesUnder (dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)))
}

/** The packages (not relative files, not Node.js built-ins) a compiled file imports. */
function importedPackages (source: string): string[] {
  const names = new Set<string>()
  const specifiers = /(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)['"]([^'"]+)['"]/g
  for (const [, specifier] of source.matchAll(specifiers)) {
    if (specifier === undefined || specifier.startsWith('.') || isBuiltin(specifier)) continue
    const parts = specifier.split('/')
    names.add(specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0] ?? specifier)
  }
  return [...names]
}

let tarball: string | undefined
let esmEntries: Record<string, string[]> | undefined

/** A copy of what `npm pack` reads: the manifest, README, LICENSE, the build settings and plugins/. */
function makeStage (): void {
  mkdirSync(join(stage, 'dist', 'lib'), { recursive: true })
  mkdirSync(consumer)
  for (const name of ['package.json', 'README.md', 'LICENSE', 'tsconfig.json', 'tsconfig.build.json', '.gitignore', '.npmignore']) {
    if (existsSync(join(root, name))) cpSync(join(root, name), join(stage, name))
  }
  cpSync(join(root, 'plugins'), join(stage, 'plugins'), { recursive: true })
  symlinkSync(join(root, 'node_modules'), join(stage, 'node_modules'), 'dir')
}

t.test('npm pack ships the fresh build, README and LICENSE, and nothing else', async (t) => {
  makeStage()
  // A file a previous build left behind (a module since removed or moved) must
  // not be published: the build starts from an empty dist/.
  writeFileSync(join(stage, 'dist', 'lib', 'removed-module.js'), 'export const leftover = true\n')
  const { stdout, seconds } = await run('npm', ['pack', '--json', '--pack-destination', work], stage)
  t.comment(`npm pack (with its prepack build): ${seconds.toFixed(1)} s`)
  let packed: { filename: string, files: Array<{ path: string }> } | undefined
  try {
    [packed] = JSON.parse(stdout.slice(stdout.indexOf('['))) as Array<NonNullable<typeof packed>>
  } catch {}
  if (packed === undefined) throw Object.assign(new Error('npm pack --json printed no list of packed files'), { stdout: tail(stdout) })
  tarball = join(work, packed.filename)
  const files = packed.files.map((file) => file.path).sort()
  t.same(files.filter((file) => !file.startsWith('dist/')), ['LICENSE', 'README.md', 'package.json'], 'only dist/, README.md, LICENSE and package.json')
  t.notOk(files.includes('dist/lib/removed-module.js'), 'a stale file in dist/ is not published')
  const built = filesUnder(join(stage, 'plugins')).filter((file) => file.endsWith('.ts'))
    .flatMap((file) => [`dist/${file.replace(/\.ts$/, '.js')}`, `dist/${file.replace(/\.ts$/, '.d.ts')}`])
  t.same(files.filter((file) => file.startsWith('dist/')), built.sort(), 'dist/ holds the JavaScript and declarations of every file of plugins/, nothing more')
  const manifest = JSON.parse(readFileSync(join(stage, 'package.json'), 'utf8')) as Manifest
  for (const [subpath, target] of Object.entries(manifest.exports)) {
    const conditions = typeof target === 'string' ? { default: target } : target
    for (const [condition, path] of Object.entries(conditions)) {
      // The source condition serves this repository's own tests and tools only.
      if (condition === 'fastify-resilience-source') continue
      t.ok(files.includes(path.replace(/^\.\//, '')), `exports["${subpath}"].${condition} (${path}) is in the tarball`)
    }
  }
})

t.test('the tarball installs into a fresh project with fastify and without ioredis', async (t) => {
  if (tarball === undefined) throw new Error('no tarball: packing failed')
  const fastifyVersion = (rootRequire('fastify/package.json') as { version: string }).version
  const typesNodeVersion = (rootRequire('@types/node/package.json') as { version: string }).version
  writeFileSync(join(consumer, 'package.json'), JSON.stringify({
    name: 'fastify-resilience-consumer',
    private: true,
    type: 'module',
    dependencies: { 'fastify-resilience': `file:${tarball}`, fastify: fastifyVersion },
    devDependencies: { '@types/node': typesNodeVersion }
  }, null, 2))
  // The npm cache first (the versions this repository installed); the registry only for what is missing.
  const { seconds } = await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--no-package-lock', '--loglevel=error'], consumer)
  t.comment(`npm install in the consumer project: ${seconds.toFixed(1)} s`)
  t.ok(existsSync(join(installed, 'package.json')), 'fastify-resilience is installed')
  t.notOk(existsSync(join(consumer, 'node_modules', 'ioredis')), 'the optional ioredis peer is not installed')
  t.throws(() => createRequire(join(consumer, 'index.js')).resolve('ioredis'), 'and nothing above the project provides it')

  const manifest = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as Manifest
  t.equal(manifest.private, undefined, 'the published manifest is not private')
  t.equal(manifest.license, 'MIT')
  t.match(readFileSync(join(installed, 'LICENSE'), 'utf8'), /^MIT License\n\nCopyright \(c\) \d{4} fastify-resilience contributors\n/, 'the MIT LICENSE with its copyright line ships')
  t.equal(manifest.peerDependencies?.fastify, '^5.0.0', 'fastify is a peer: the app\'s one copy is used')
  t.notOk(manifest.dependencies !== undefined && 'fastify' in manifest.dependencies, 'fastify is not a dependency')
  t.equal(manifest.peerDependenciesMeta?.ioredis?.optional, true, 'ioredis is an optional peer')
  t.same(Object.keys(manifest.dependencies ?? {}).sort(), ['@fastify/error', 'cockatiel', 'fastify-plugin', 'prom-client'], 'the runtime dependencies')

  // What the published files import must be installed by whoever installs the
  // package: a dependency or a required peer. Declarations may not import an
  // optional peer either, or users without it cannot compile.
  const required = new Set([...Object.keys(manifest.dependencies ?? {}),
    ...Object.keys(manifest.peerDependencies ?? {}).filter((name) => manifest.peerDependenciesMeta?.[name]?.optional !== true)])
  const strays: string[] = []
  for (const file of filesUnder(join(installed, 'dist'))) {
    for (const name of importedPackages(readFileSync(join(installed, 'dist', file), 'utf8'))) {
      if (!required.has(name)) strays.push(`dist/${file} imports "${name}"`)
    }
  }
  t.same(strays, [], 'the published files import only dependencies and required peers')
})

t.test('a TypeScript program that uses every plugin compiles with NodeNext, strict and skipLibCheck: false', async (t) => {
  if (!existsSync(join(installed, 'package.json'))) throw new Error('the package is not installed: an earlier step failed')
  cpSync(join(fixtures, 'consumer.ts'), join(consumer, 'consumer.ts'))
  writeFileSync(join(consumer, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      // A Node.js project's settings, as fastify-tsconfig has them: no DOM library.
      target: 'ES2023',
      lib: ['ES2023'],
      strict: true,
      skipLibCheck: false,
      types: ['node'],
      outDir: 'out',
      noEmitOnError: true
    },
    files: ['consumer.ts']
  }, null, 2))
  // This repository's TypeScript: the consumer project has none of its own.
  const { seconds } = await run(process.execPath, [rootRequire.resolve('typescript/bin/tsc'), '-p', 'tsconfig.json', '--pretty', 'false'], consumer)
  t.comment(`tsc in the consumer project: ${seconds.toFixed(1)} s`)
  t.ok(existsSync(join(consumer, 'out', 'consumer.js')), 'compiled without errors')
})

t.test('with ioredis installed, a Redis and a Cluster are the breaker\'s and the flags\' client without casts, directly or through @fastify/redis', async (t) => {
  if (!existsSync(join(installed, 'package.json'))) throw new Error('the package is not installed: an earlier step failed')
  // A project of its own, so that the steps above keep proving the package needs no ioredis.
  const withRedis = join(work, 'with-redis')
  mkdirSync(withRedis)
  cpSync(join(consumer, 'package.json'), join(withRedis, 'package.json'))
  cpSync(join(consumer, 'node_modules'), join(withRedis, 'node_modules'), { recursive: true })
  const version = (name: string): string => (JSON.parse(readFileSync(rootRequire.resolve(`${name}/package.json`), 'utf8')) as { version: string }).version
  const { seconds } = await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--no-package-lock', '--loglevel=error', `ioredis@${version('ioredis')}`, `@fastify/redis@${version('@fastify/redis')}`], withRedis)
  t.comment(`npm install ioredis @fastify/redis: ${seconds.toFixed(1)} s`)
  cpSync(join(fixtures, 'redis-clients.ts'), join(withRedis, 'redis-clients.ts'))
  writeFileSync(join(withRedis, 'tsconfig.json'), readFileSync(join(consumer, 'tsconfig.json'), 'utf8').replace('"consumer.ts"', '"redis-clients.ts"'))
  await run(process.execPath, [rootRequire.resolve('typescript/bin/tsc'), '-p', 'tsconfig.json', '--pretty', 'false'], withRedis)
  t.ok(existsSync(join(withRedis, 'out', 'redis-clients.js')), 'compiled without errors')
})

t.test('the program runs as ESM with plain node: every plugin works from the package', async (t) => {
  if (!existsSync(join(consumer, 'out', 'consumer.js'))) throw new Error('the program was not compiled: an earlier step failed')
  const { stdout, seconds } = await run(process.execPath, ['out/consumer.js'], consumer, 60_000)
  t.comment(`node out/consumer.js: ${seconds.toFixed(1)} s`)
  const result = lastJsonLine(stdout)
  t.match(result.umbrella, {
    greeting: { status: 200, body: { hello: 'world', aborted: false }, handlerCalls: 2 },
    beta: { status: 503, code: 'FST_RESILIENCE_FEATURE_DISABLED' },
    degraded: { status: 200, body: { degraded: true } },
    breaker: { value: 42, state: 'closed' },
    retry: { value: 'retried', attempts: 2 },
    fallback: { value: 'default after 1 failures', tier: 'default' },
    flags: { greeting: true, beta: false },
    loadShedding: { inFlight: 0, limit: 4 },
    metrics: { scrapeStatus: 200, names: ['circuit_breaker_calls_total', 'fallback_total', 'requests_in_flight', 'feature_flag_enabled'] }
  }, 'the umbrella plugin, a route with every config.resilience option, and each decorator')
  t.match(result.oneByOne, { status: 200, body: { calls: 2 } }, 'each plugin registered alone from its subpath')
  for (const [name, ok] of Object.entries(result.guards as Record<string, boolean>)) t.equal(ok, true, `guard ${name}`)
  for (const [name, same] of Object.entries(result.sameFunctions as Record<string, boolean>)) {
    t.equal(same, true, `fastify-resilience/${name}'s default export is the root entry's ${name}`)
  }
  esmEntries = result.entries as Record<string, string[]>
  const manifest = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as Manifest
  t.same(Object.keys(esmEntries).sort(), Object.keys(manifest.exports).filter((subpath) => subpath !== './package.json').sort(), 'every entry of the exports map imports')
  for (const [subpath, names] of Object.entries(esmEntries)) t.ok(names.length > 0, `${subpath} exports something`)
})

t.test('require() from CommonJS loads every entry with the exports ESM sees', async (t) => {
  if (!existsSync(join(installed, 'package.json'))) throw new Error('the package is not installed: an earlier step failed')
  cpSync(join(fixtures, 'require.cjs'), join(consumer, 'require.cjs'))
  const { stdout, seconds } = await run(process.execPath, ['require.cjs'], consumer, 60_000)
  t.comment(`node require.cjs: ${seconds.toFixed(1)} s`)
  const result = lastJsonLine(stdout)
  t.equal(result.requireModule, true, `this Node.js (${process.version}) loads ES modules with require()`)
  t.equal(result.defaultIsUmbrella, true, 'require(...).default is the umbrella plugin')
  t.equal(result.guard, true, 'the guards work')
  t.match(result.greeting, { status: 200, body: { hello: 'commonjs' }, state: 'closed' }, 'a CommonJS app registers the umbrella and serves a route with config.resilience')
  // Node.js adds __esModule to what require() returns for an ES module with a default export.
  const required = Object.fromEntries(Object.entries(result.entries as Record<string, string[]>)
    .map(([subpath, names]) => [subpath, names.filter((name) => name !== '__esModule')]))
  if (esmEntries === undefined) t.fail('no ESM exports to compare with: the ESM step failed')
  else t.same(required, esmEntries, 'each entry has the same exports through require() as through import')
})

/** The Node.js of `version` for this platform, from the npm registry (node-<platform>-<arch>), unpacked under `work`. */
async function nodeBinary (version: string): Promise<string> {
  const folder = join(work, `node-${version}`)
  mkdirSync(folder)
  const { stdout } = await run('npm', ['pack', '--prefer-offline', '--json', '--pack-destination', folder, `node-${process.platform}-${process.arch}@${version}`], folder)
  const [packed] = JSON.parse(stdout.slice(stdout.indexOf('['))) as Array<{ filename: string }>
  await run('tar', ['-xzf', join(folder, (packed as { filename: string }).filename)], folder)
  return join(folder, 'package', 'bin', 'node')
}

/** npm's own entry point, to run npm on another Node.js. */
function npmCli (): string {
  return realpathSync(join(dirname(realpathSync(process.execPath)), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js'))
}

t.test('on Node.js 22.12, the oldest that package.json engines allows, npm installs it without an engine warning and the program runs', async (t) => {
  if (tarball === undefined || !existsSync(join(consumer, 'out', 'consumer.js'))) throw new Error('no tarball or no compiled program: an earlier step failed')
  const engines = (JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as { engines?: { node?: string } }).engines
  t.equal(engines?.node, '>=22.12', 'the declared engines')
  const node22 = await nodeBinary('22.12.0')
  const install = async (node: string, project: string): Promise<string> => {
    mkdirSync(project)
    cpSync(join(consumer, 'package.json'), join(project, 'package.json'))
    const { stderr } = await run(node, [npmCli(), 'install', '--prefer-offline', '--no-audit', '--no-fund', '--no-package-lock', '--loglevel=warn'], project)
    return stderr
  }
  const on22 = join(work, 'on-node-22')
  t.notMatch(await install(node22, on22), /EBADENGINE/, 'no engine warning on Node.js 22.12, for the package or its dependencies (cockatiel 4 asks for 22)')
  if (process.versions.node.startsWith('20.')) {
    t.match(await install(process.execPath, join(work, 'on-node-20')), /EBADENGINE[\s\S]*fastify-resilience/, `and the same install on this Node.js ${process.version} warns, so the check above can fail`)
  }
  cpSync(join(consumer, 'out'), join(on22, 'out'), { recursive: true })
  cpSync(join(fixtures, 'require.cjs'), join(on22, 'require.cjs'))
  const { stdout } = await run(node22, ['out/consumer.js'], on22, 60_000)
  t.match(lastJsonLine(stdout).oneByOne, { status: 200, body: { calls: 2 } }, 'the ESM program runs on Node.js 22.12')
  const required = lastJsonLine((await run(node22, ['require.cjs'], on22, 60_000)).stdout)
  t.equal(required.requireModule, true, 'and require() loads the package on Node.js 22.12')
})
