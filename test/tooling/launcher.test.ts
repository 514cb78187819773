import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'tap'
import type { Test } from 'tap'
import { findBinary } from '../../local-services/index.js'
import { childEnv } from '../fixtures/child-env.js'

const launcher = fileURLToPath(new URL('../../tap.config.ts', import.meta.url))
// The fixture folder has its own package.json, so the nested tap run takes it as
// its project root and keeps its own .tap/ folder: tap empties .tap/coverage at
// start, which would otherwise wipe the coverage data of this outer run.
const fixtureRoot = fileURLToPath(new URL('../fixtures/launcher/', import.meta.url))

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

/** PostgreSQL, Redis, and the Redis Cluster's three masters. */
const SERVERS = 5

/** The PIDs the nested run's tests were given, after checking there is one for each server. */
function reportedPids (t: Test, path: string): number[] {
  const report = JSON.parse(readFileSync(path, 'utf8')) as { pids: string, clusterNodes: string }
  t.match(report.clusterNodes, /^127\.0\.0\.1:\d+(,127\.0\.0\.1:\d+){2}$/, 'the tests were given the three masters of the Redis Cluster')
  const pids = report.pids.split(',').map(Number)
  t.equal(pids.length, SERVERS, 'PostgreSQL, Redis and the three cluster masters were running during the test')
  t.equal(new Set(pids).size, SERVERS, 'each is a process of its own')
  return pids
}

test('after a failing test run no PostgreSQL, Redis or Redis Cluster server is left behind', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'launcher-test-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const report = join(dir, 'pids')
  const run = launch({ LAUNCHER_TEST_REPORT: report, LAUNCHER_TEST_MODE: 'fail' })

  const code = await run.exited
  t.not(code, 0, 'the failing test fails the run')
  t.match(run.output(), /deliberate failure/)
  const pids = reportedPids(t, report)
  for (const pid of pids) {
    t.ok(pid > 0, `pid ${pid} was reported`)
    t.equal(isAlive(pid), false, `server ${pid} is gone`)
  }
})

test('Ctrl-C (SIGINT) during the run stops all the servers', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'launcher-test-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const report = join(dir, 'pids')
  const run = launch({ LAUNCHER_TEST_REPORT: report, LAUNCHER_TEST_MODE: 'hang' })
  t.teardown(() => { run.child.kill('SIGKILL') })

  await waitForFile(report, run.exited)
  const pids = reportedPids(t, report)
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

test('a missing redis-cli gives one message that says how to install it', async (t) => {
  const onlyServer = mkdtempSync(join(tmpdir(), 'launcher-path-'))
  t.teardown(() => rmSync(onlyServer, { recursive: true, force: true }))
  const redisServer = findBinary('redis-server')
  if (redisServer === undefined) throw new Error('redis-server is not on PATH')
  symlinkSync(redisServer, join(onlyServer, 'redis-server'))
  const run = launch({ PATH: onlyServer, LAUNCHER_TEST_REPORT: join(onlyServer, 'never'), LAUNCHER_TEST_MODE: 'fail' })

  t.equal(await run.exited, 1)
  t.match(run.output(), /Cannot start the test services: redis-cli was not found on PATH: install the Redis tools/)
  t.notMatch(run.output(), /deliberate failure/, 'no test ran')
})
