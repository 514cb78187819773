// The demo players: example-app/db/seed.ts, run by hand on a database of
// one's own (npm start seeds its embedded PostgreSQL itself: start.test.ts).
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { test } from 'tap'
import type { Teardown } from '../fixtures/app.js'
import { childEnv } from '../fixtures/child-env.js'
import { ownDatabase } from '../fixtures/services.js'
import { within } from '../fixtures/wait.js'

const root = fileURLToPath(new URL('../..', import.meta.url))

/** Runs the seed script as its usage line says; resolves with its exit code and output. */
async function seedScript (t: Teardown, env: Record<string, string>, args: string[] = []): Promise<{ code: number | null, output: string }> {
  const childEnvironment = childEnv(env)
  if (!('DATABASE_URL' in env)) delete childEnvironment.DATABASE_URL
  const child = spawn(process.execPath, ['--import', 'tsx', 'example-app/db/seed.ts', ...args], { cwd: root, env: childEnvironment, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { child.kill('SIGKILL') })
  let output = ''
  child.stdout.on('data', (chunk) => { output += chunk })
  child.stderr.on('data', (chunk) => { output += chunk })
  const code = await within('the seed script to exit', new Promise<number | null>((resolve) => child.once('exit', resolve)), 60_000)
  return { code, output }
}

async function playersIn (t: Teardown, databaseUrl: string): Promise<Array<{ id: number, username: string }>> {
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  t.teardown(() => client.end())
  return (await client.query<{ id: number, username: string }>('SELECT id, username FROM players ORDER BY id')).rows
}

test('the seed script creates the schema and seeds players 1..count into an empty database, and nothing into one that has players', async (t) => {
  const databaseUrl = await ownDatabase(t)
  const first = await seedScript(t, { DATABASE_URL: databaseUrl }, ['25'])
  t.equal(first.code, 0, 'exit code 0')
  t.match(first.output, /^Seeded 25 players\.$/m)
  const seeded = await playersIn(t, databaseUrl)
  t.equal(seeded.length, 25)
  t.same(seeded[0], { id: 1, username: 'player_1' })
  t.same(seeded.at(-1), { id: 25, username: 'player_25' })

  const second = await seedScript(t, { DATABASE_URL: databaseUrl }, ['50'])
  t.equal(second.code, 0, 'exit code 0')
  t.match(second.output, /^The players table is not empty: nothing seeded\.$/m)
  t.equal((await playersIn(t, databaseUrl)).length, 25, 'still 25 players')
})

test('the seed script without DATABASE_URL or with a bad count prints its usage and exits with 1', async (t) => {
  for (const [env, args] of [[{}, []], [{ DATABASE_URL: 'postgres://127.0.0.1:1/none' }, ['many']], [{ DATABASE_URL: 'postgres://127.0.0.1:1/none' }, ['0']]] as const) {
    const run = await seedScript(t, env, [...args])
    t.equal(run.code, 1, `${JSON.stringify(env)} ${args.join(' ')}: exit code 1`)
    t.match(run.output, /^Usage: DATABASE_URL=postgres:\/\/\.\.\. npx tsx example-app\/db\/seed\.ts/m)
  }
})
