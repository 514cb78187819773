import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'tap'
import { childEnv } from './fixtures/child-env.js'

const launcher = fileURLToPath(new URL('../tap.config.ts', import.meta.url))
// The fixture folder has its own package.json, so the nested tap run takes it as
// its project root and keeps its own .tap/ folder: tap empties .tap/coverage at
// start, which would otherwise wipe the coverage data of this outer run.
const fixtureRoot = fileURLToPath(new URL('./fixtures/launcher/', import.meta.url))

function launch (env: Record<string, string>): { child: ReturnType<typeof spawn>, output: () => string, exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx', launcher, 'report-services.ts', '--disable-coverage', '--reporter=tap'], {
    cwd: fixtureRoot,
    env: childEnv(env),
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout?.on('data', (chunk) => { output += chunk })
  child.stderr?.on('data', (chunk) => { output += chunk })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return { child, output: () => output, exited }
}

function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function waitForFile (path: string, exited: Promise<unknown>, deadlineMs = 90_000): Promise<void> {
  let done = false
  exited.then(() => { done = true }, () => { done = true })
  const deadline = Date.now() + deadlineMs
  while (!existsSync(path) || readFileSync(path, 'utf8') === '') {
    if (done || Date.now() > deadline) throw new Error(`${path} was never written`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

function reportedPids (path: string): number[] {
  return readFileSync(path, 'utf8').split(',').map(Number)
}

test('after a failing test run no PostgreSQL or Redis server is left behind', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'launcher-test-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const report = join(dir, 'pids')
  const run = launch({ LAUNCHER_TEST_REPORT: report, LAUNCHER_TEST_MODE: 'fail' })

  const code = await run.exited
  t.not(code, 0, 'the failing test fails the run')
  t.match(run.output(), /deliberate failure/)
  const pids = reportedPids(report)
  t.equal(pids.length, 2, 'both servers were running during the test')
  for (const pid of pids) {
    t.ok(pid > 0, `pid ${pid} was reported`)
    t.equal(isAlive(pid), false, `server ${pid} is gone`)
  }
})

test('Ctrl-C (SIGINT) during the run stops both servers', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'launcher-test-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const report = join(dir, 'pids')
  const run = launch({ LAUNCHER_TEST_REPORT: report, LAUNCHER_TEST_MODE: 'hang' })
  t.teardown(() => { run.child.kill('SIGKILL') })

  await waitForFile(report, run.exited)
  const pids = reportedPids(report)
  for (const pid of pids) t.equal(isAlive(pid), true, `server ${pid} runs while the tests run`)

  run.child.kill('SIGINT')
  const code = await run.exited
  t.not(code, 0, 'an interrupted run is not a success')
  for (const pid of pids) t.equal(isAlive(pid), false, `server ${pid} is gone after Ctrl-C`)
})

test('a missing server binary gives one message that says how to install it', async (t) => {
  const emptyPath = mkdtempSync(join(tmpdir(), 'launcher-path-'))
  t.teardown(() => rmSync(emptyPath, { recursive: true, force: true }))
  const run = launch({ PATH: emptyPath, LAUNCHER_TEST_REPORT: join(emptyPath, 'never'), LAUNCHER_TEST_MODE: 'fail' })

  t.equal(await run.exited, 1)
  t.match(run.output(), /Cannot start the test services: redis-server was not found on PATH: install Redis \(Debian: apt-get install redis-server\)/)
  t.notMatch(run.output(), /deliberate failure/, 'no test ran')
})
