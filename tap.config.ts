/**
 * The one place where the test run is configured, and what `npm test` runs
 * (`tsx tap.config.ts [extra tap arguments]`). tap does not read this file by
 * itself, so it is a small launcher:
 *
 * 1. starts, in parallel, a throwaway PostgreSQL, a throwaway Redis and a
 *    throwaway 3-master Redis Cluster (no replicas) on free loopback ports,
 *    each server in its own temporary folder (see local-services/);
 * 2. runs tap with the settings below, handing the servers' addresses to the
 *    tests in RESILIENCE_TEST_DATABASE_URL, RESILIENCE_TEST_REDIS_URL and
 *    RESILIENCE_TEST_REDIS_CLUSTER_NODES (the masters, `127.0.0.1:<port>,...`),
 *    and every server's pid in RESILIENCE_TEST_SERVICE_PIDS;
 * 3. stops all the servers whatever happens: tests pass or fail, Ctrl-C (SIGINT),
 *    SIGTERM, or a crash of this launcher; then exits with tap's exit code.
 */
import { spawn } from 'node:child_process'
import { constants as osConstants } from 'node:os'
import { fileURLToPath } from 'node:url'
import { MissingBinaryError, startPostgres, startRedis, startRedisCluster } from './local-services/index.js'
import type { PostgresServer, RedisCluster, RedisServer } from './local-services/index.js'

/** The tap settings of this project, turned into tap command-line flags. */
export interface TestRunConfig {
  /** Test files (globs). */
  include: string[]
  /** Type-check every test file, not only transpile it. */
  typecheck: boolean
  /** Seconds before a test file is killed. */
  timeout: number
  /** Test files run at once. */
  jobs: number
  /**
   * Globs of the files whose coverage is measured for a test file (null: that
   * test adds no coverage). tap requires 100 % of what is measured. Only the
   * library (plugins/) is; not
   * measured: example-app/ (a demo with its own tests), local-services/ and
   * test/ (test infrastructure), bench/, dist/ (the compiled copy of plugins/
   * that test/tooling/package.test.ts imports) and this launcher.
   */
  coverageMap: (testFile: string) => string[] | null
  /** Coverage report printed at the end. */
  coverageReport: string
  /**
   * Node flags of every test process. `--conditions=fastify-resilience-source` makes
   * `import ... from 'fastify-resilience'` (the example app's imports) load
   * plugins/*.ts instead of the built dist/, through the exports map's
   * "fastify-resilience-source" condition.
   */
  nodeArgs: string[]
}

export const config: TestRunConfig = {
  include: ['test/**/*.test.ts'],
  typecheck: true,
  timeout: 120,
  jobs: 2,
  // Tests of the library (test/plugins/, test/lib/) must cover it by
  // themselves; those of the example app and of the tooling add nothing.
  coverageMap: (testFile) => /^test\/(plugins|lib)\//.test(testFile) ? ['plugins/**/*.ts'] : null,
  coverageReport: 'text',
  nodeArgs: ['--conditions=fastify-resilience-source']
}

export function tapArguments (run: TestRunConfig, extra: string[]): string[] {
  const args = [
    `--timeout=${run.timeout}`,
    `--jobs=${run.jobs}`,
    `--coverage-report=${run.coverageReport}`,
    // tap imports this very file for its coverage map (the default export below).
    '--coverage-map=tap.config.ts',
    ...run.include.map((glob) => `--include=${glob}`),
    ...run.nodeArgs.map((arg) => `--node-arg=${arg}`)
  ]
  if (run.typecheck) args.push('--typecheck')
  return [...args, ...extra]
}

async function main (): Promise<number> {
  let postgres: PostgresServer | undefined
  let redis: RedisServer | undefined
  let cluster: RedisCluster | undefined
  let stopping: Promise<void> | undefined
  const stopServices = async (): Promise<void> => {
    stopping ??= Promise.allSettled([postgres?.stop(), redis?.stop(), cluster?.stop()]).then(() => {})
    await stopping
  }
  let tap: ReturnType<typeof spawn> | undefined
  let interrupted: NodeJS.Signals | undefined
  const onSignal = (signal: NodeJS.Signals): void => {
    interrupted ??= signal
    if (tap?.pid === undefined || tap.exitCode !== null || tap.signalCode !== null) {
      stopServices().then(() => process.exit(128 + osConstants.signals[signal]), () => process.exit(1))
      return
    }
    // tap and its test processes form their own process group: signal them all,
    // since tap alone does not end a test process that is stuck. Whatever has
    // not ended after the grace period is killed; the servers stop after that.
    signalGroup(tap.pid, signal)
    setTimeout(() => { if (tap?.pid !== undefined) signalGroup(tap.pid, 'SIGKILL') }, 5000).unref()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  process.on('SIGHUP', onSignal)

  try {
    const started = await Promise.allSettled([startPostgres(), startRedis(), startRedisCluster()])
    if (started[0].status === 'fulfilled') postgres = started[0].value
    if (started[1].status === 'fulfilled') redis = started[1].value
    if (started[2].status === 'fulfilled') cluster = started[2].value
    const failure = started.find((result): result is PromiseRejectedResult => result.status === 'rejected')
    if (failure !== undefined || postgres === undefined || redis === undefined || cluster === undefined) {
      const reason: unknown = failure?.reason
      console.error(`Cannot start the test services: ${reason instanceof MissingBinaryError ? reason.message : String(reason)}`)
      return 1
    }
    // tsx lets tap's runner import this TypeScript file as its coverage map.
    const child = spawn(process.execPath, ['--import', 'tsx', tapBin(), ...tapArguments(config, process.argv.slice(2))], {
      stdio: 'inherit',
      detached: true,
      env: {
        ...process.env,
        RESILIENCE_TEST_DATABASE_URL: postgres.url,
        RESILIENCE_TEST_REDIS_URL: redis.url,
        RESILIENCE_TEST_REDIS_CLUSTER_NODES: cluster.nodes.map(({ host, port }) => `${host}:${port}`).join(','),
        RESILIENCE_TEST_SERVICE_PIDS: [postgres.process, redis.process, ...cluster.masters.map((master) => master.process)].map(({ pid }) => pid).join(',')
      }
    })
    tap = child
    return await new Promise<number>((resolve) => {
      child.once('error', (error) => { console.error(error); resolve(1) })
      child.once('exit', (code, signal) => {
        const ended = interrupted ?? signal
        resolve(ended !== null && ended !== undefined ? 128 + osConstants.signals[ended] : code ?? 1)
      })
    })
  } finally {
    await stopServices()
  }
}

function signalGroup (leaderPid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-leaderPid, signal)
  } catch {
    // The group is already gone.
  }
}

function tapBin (): string {
  return fileURLToPath(new URL('./node_modules/tap/dist/esm/run.mjs', import.meta.url))
}

/** tap's coverage-map module interface: which files to measure for a test file. */
export default function coverageMap (testFile: string): string[] | null {
  return config.coverageMap(testFile)
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().then((code) => { process.exitCode = code }, (error: unknown) => {
    console.error(error)
    process.exitCode = 1
  })
}
