// The real server process: started as `npm start` starts it, stopped with
// SIGTERM while a request is in flight.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { test } from 'tap'
import { childEnv } from './fixtures/child-env.js'
import { deferred } from './fixtures/clock.js'
import { ownDatabase, testRedisUrl } from './fixtures/services.js'
import { waitFor } from './fixtures/wait.js'

const root = fileURLToPath(new URL('..', import.meta.url))

test('SIGTERM during traffic: the in-flight request completes and the process exits with 0', async (t) => {
  const databaseUrl = await ownDatabase(t)
  const child = spawn(process.execPath, ['--import', 'tsx', '--conditions=fastify-resilience-source', 'example-app/server.ts'], {
    cwd: root,
    env: childEnv({ PORT: '0', DATABASE_URL: databaseUrl, REDIS_URL: testRedisUrl(), LOG_LEVEL: 'info' }),
    stdio: ['ignore', 'pipe', 'pipe']
  })
  t.teardown(() => { child.kill('SIGKILL') })
  let output = ''
  const listening = deferred<string>()
  child.stdout.on('data', (chunk) => {
    output += chunk
    const match = /listening on (http:\/\/\S+)/.exec(output)
    if (match?.[1] !== undefined) listening.resolve(match[1])
  })
  child.stderr.on('data', (chunk) => { output += chunk })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const base = await Promise.race([listening.promise, exited.then(() => { throw new Error(`the server exited:\n${output}`) })])
  t.match(output, /curl -i http:\/\/127\.0\.0\.1:\d+\/players\/1/, 'it prints how to try it')
  t.equal((await fetch(`${base}/players/1`)).status, 200)

  // Hold player 7's row so that a score update waits inside PostgreSQL: a request in flight.
  const locker = new pg.Client({ connectionString: databaseUrl })
  await locker.connect()
  t.teardown(() => locker.end())
  await locker.query('BEGIN')
  await locker.query('SELECT 1 FROM players WHERE id = 7 FOR UPDATE')
  const update = fetch(`${base}/players/7/score`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ score: 777 }) })
  await waitFor('the update to wait on the row lock', async () => {
    // (pg_stat_activity may still show the session's previous statement text here.)
    const { rows } = await locker.query<{ waiting: number }>("SELECT count(*)::int AS waiting FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
    return rows[0]?.waiting === 1
  })

  child.kill('SIGTERM')
  await waitFor('the server to start draining', () => output.includes('shutting down: draining requests') || /"msg":"shutting down/.test(output))
  await locker.query('COMMIT')
  const response = await update
  t.equal(response.status, 200, 'the in-flight request completed')
  t.equal(((await response.json()) as { score: number }).score, 777)
  t.equal(await exited, 0, 'exit code 0')
})

test('a bad environment value stops the server at once, naming the variable', async (t) => {
  const child = spawn(process.execPath, ['--import', 'tsx', '--conditions=fastify-resilience-source', 'example-app/server.ts'], {
    cwd: root,
    env: childEnv({ PORT: 'eighty' }),
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout.on('data', (chunk) => { output += chunk })
  child.stderr.on('data', (chunk) => { output += chunk })
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  t.equal(code, 1)
  t.match(output, /Bad configuration: PORT must be an integer from 0 to 65535 \(got "eighty"\)/)
})
