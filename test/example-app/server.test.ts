// The real server process: started as `npm start` starts it, stopped with
// SIGTERM while a request is in flight, while a client holds a silent
// connection, and while a request never ends (the shutdown deadline).
import { spawn } from 'node:child_process'
import type { ChildProcessByStdio } from 'node:child_process'
import { connect } from 'node:net'
import type { Socket } from 'node:net'
import type { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { test } from 'tap'
import type { Teardown } from '../fixtures/app.js'
import { childEnv } from '../fixtures/child-env.js'
import { deferred } from '../fixtures/clock.js'
import { get } from '../fixtures/http.js'
import { ownDatabase, testRedisUrl } from '../fixtures/services.js'
import { waitFor } from '../fixtures/wait.js'
import { playersDatabase } from './fixtures/players-database.js'

const root = fileURLToPath(new URL('../..', import.meta.url))

interface LogLine { level: number, msg: string, [key: string]: unknown }

interface RunningServer {
  base: string
  port: number
  child: ChildProcessByStdio<null, Readable, Readable>
  /** Everything the process printed so far, stdout and stderr. */
  output: () => string
  /** The complete JSON (pino) lines printed so far. */
  logs: () => LogLine[]
  /** The exit code once the process has exited (null: ended by a signal), undefined before. */
  exitCode: () => number | null | undefined
}

/** Starts example-app/server.ts as `npm start` does, on a free port, and waits until it listens. */
async function startServer (t: Teardown, env: Record<string, string>): Promise<RunningServer> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--conditions=fastify-resilience-source', 'example-app/server.ts'], {
    cwd: root,
    env: childEnv({ PORT: '0', LOG_LEVEL: 'info', ...env }),
    stdio: ['ignore', 'pipe', 'pipe']
  })
  t.teardown(() => { child.kill('SIGKILL') })
  let output = ''
  let exitCode: number | null | undefined
  const listening = deferred<string>()
  child.stdout.on('data', (chunk) => {
    output += chunk
    const match = /listening on (http:\/\/\S+)/.exec(output)
    if (match?.[1] !== undefined) listening.resolve(match[1])
  })
  child.stderr.on('data', (chunk) => { output += chunk })
  const exited = new Promise<void>((resolve) => child.once('exit', (code) => {
    exitCode = code
    resolve()
  }))
  const base = await Promise.race([listening.promise, exited.then(() => { throw new Error(`the server exited:\n${output}`) })])
  const logs = (): LogLine[] => output.slice(0, output.lastIndexOf('\n')).split('\n')
    .filter((line) => line.startsWith('{"level":'))
    .map((line) => JSON.parse(line) as LogLine)
  return { base, port: Number(new URL(base).port), child, output: () => output, logs, exitCode: () => exitCode }
}

/** A raw TCP connection to the server, closed at teardown; `closedAt` is when it closed. */
async function rawConnection (t: Teardown, port: number): Promise<{ socket: Socket, closedAt: () => number | undefined }> {
  const socket = connect(port, '127.0.0.1')
  t.teardown(() => { socket.destroy() })
  let closedAt: number | undefined
  socket.on('error', () => {}) // a reset from the server is a close too
  socket.once('close', () => { closedAt = Date.now() })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  return { socket, closedAt: () => closedAt }
}

test('on a database named by DATABASE_URL the server creates the schema and seeds no players', async (t) => {
  const databaseUrl = await ownDatabase(t)
  const server = await startServer(t, { DATABASE_URL: databaseUrl, REDIS_URL: testRedisUrl() })
  t.equal((await fetch(`${server.base}/players/1`)).status, 404, 'no player 1')
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  t.teardown(() => client.end())
  const { rows } = await client.query<{ players: number }>('SELECT count(*)::int AS players FROM players')
  t.equal(rows[0]?.players, 0, 'the players table exists and is empty')
  t.notMatch(server.output(), /Seeded/, 'nothing says it seeded')
})

test('SIGTERM during traffic: the in-flight request completes and the process exits with 0', async (t) => {
  const databaseUrl = await playersDatabase(t, 20)
  const server = await startServer(t, { DATABASE_URL: databaseUrl, REDIS_URL: testRedisUrl() })
  const { base } = server
  t.match(server.output(), /curl -i http:\/\/127\.0\.0\.1:\d+\/players\/1/, 'it prints how to try it')
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

  server.child.kill('SIGTERM')
  await waitFor('the server to start draining', () => server.logs().some((line) => line.msg === 'shutting down: draining requests'))
  await locker.query('COMMIT')
  const response = await update
  t.equal(response.status, 200, 'the in-flight request completed')
  t.equal(((await response.json()) as { score: number }).score, 777)
  await waitFor('the process to exit after the drain', () => server.exitCode() !== undefined, 30_000)
  t.equal(server.exitCode(), 0, 'exit code 0')
})

test('SIGTERM with a silent connection open: the server closes it at once and exits with 0, long before the deadline', async (t) => {
  const databaseUrl = await ownDatabase(t)
  // A deadline far beyond the waits below: only closing the silent connection lets the process end in time.
  const server = await startServer(t, { DATABASE_URL: databaseUrl, REDIS_URL: testRedisUrl(), SHUTDOWN_TIMEOUT_MS: '120000' })
  const silent = await rawConnection(t, server.port)
  // The server accepts connections in the order they arrived, so once it has
  // answered a later one it holds the silent one too.
  t.equal((await get(server.port, '/health/live')).status, 200)

  server.child.kill('SIGTERM')
  await waitFor('the server to close the silent connection after SIGTERM', () => silent.closedAt() !== undefined, 15_000)
  await waitFor('the process to exit (SHUTDOWN_TIMEOUT_MS is 120000, so only a prompt drain ends it in time)', () => server.exitCode() !== undefined, 15_000)
  t.equal(server.exitCode(), 0, 'exit code 0')
  t.ok(server.logs().some((line) => line.msg === 'closed 1 connection(s) that carried no request' && line.connections === 1),
    'the server says it closed the silent connection')
  t.notOk(server.logs().some((line) => line.msg.startsWith('drain cut')), 'the drain was not cut')
})

test('a request that never ends is cut at SHUTDOWN_TIMEOUT_MS: its connection closed, the cut logged at warn, exit 1', async (t) => {
  const databaseUrl = await ownDatabase(t)
  const timeoutMs = 1500
  const server = await startServer(t, { DATABASE_URL: databaseUrl, REDIS_URL: testRedisUrl(), SHUTDOWN_TIMEOUT_MS: String(timeoutMs) })
  // A slow upload: the headers of a score update and half its body. The
  // request is in flight (the route waits for the rest) and would stay so.
  const upload = await rawConnection(t, server.port)
  const body = JSON.stringify({ score: 777 })
  upload.socket.write(`PUT /players/7/score HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body.slice(0, 9)}`)
  await waitFor('the server to receive the upload', () => server.logs().some((line) =>
    line.msg === 'incoming request' && (line.req as { url?: string } | undefined)?.url === '/players/7/score'))

  const signalledAt = Date.now()
  server.child.kill('SIGTERM')
  await waitFor(`the process to exit (SHUTDOWN_TIMEOUT_MS is ${timeoutMs})`, () => server.exitCode() !== undefined, 30_000)
  t.equal(server.exitCode(), 1, 'exit code 1: the drain was cut')
  const closedAt = upload.closedAt()
  t.ok(closedAt !== undefined && closedAt - signalledAt >= timeoutMs - 50,
    `the upload's connection stayed open until the deadline (closed ${closedAt === undefined ? 'never' : `${closedAt - signalledAt} ms`} after SIGTERM)`)
  const cut = server.logs().find((line) => line.msg.startsWith('drain cut'))
  t.match(cut, { level: 40, timeoutMs, requestsInFlight: 1, connections: 1 }, 'a warning says what was cut')
  t.match(cut?.msg, /1 request\(s\) still in flight and 1 connection\(s\) open after 1500 ms \(SHUTDOWN_TIMEOUT_MS\)/)
})

test('a bad environment value stops the server at once, naming the variable', async (t) => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ PORT: 'eighty' }, /Bad configuration: PORT must be an integer from 0 to 65535 \(got "eighty"\)/],
    [{ SHUTDOWN_TIMEOUT_MS: '0' }, /Bad configuration: SHUTDOWN_TIMEOUT_MS must be an integer from 1 to 3600000 \(got "0"\)/]
  ]
  for (const [env, message] of cases) {
    const child = spawn(process.execPath, ['--import', 'tsx', '--conditions=fastify-resilience-source', 'example-app/server.ts'], {
      cwd: root,
      env: childEnv(env),
      stdio: ['ignore', 'pipe', 'pipe']
    })
    t.teardown(() => { child.kill('SIGKILL') })
    let output = ''
    child.stdout.on('data', (chunk) => { output += chunk })
    child.stderr.on('data', (chunk) => { output += chunk })
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
    t.equal(code, 1, JSON.stringify(env))
    t.match(output, message)
  }
})
