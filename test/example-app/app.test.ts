import type { FastifyInstance } from 'fastify'
import pg from 'pg'
import { test } from 'tap'
import { buildApp } from '../../example-app/app.js'
import type { AppOptions } from '../../example-app/app.js'
import { readConfig } from '../../example-app/env.js'
import { ownDatabase, testRedisUrl, uniqueName } from '../fixtures/services.js'
import { waitFor } from '../fixtures/wait.js'
import { playersDatabase } from './fixtures/players-database.js'
import type { Teardown } from '../fixtures/app.js'

const TOKEN = 'example-admin-token-0123'

const prefixes = new WeakMap<FastifyInstance, string>()
const prefixOf = (app: FastifyInstance): string => prefixes.get(app) as string

async function players (t: Teardown, options: Partial<AppOptions> = {}): Promise<FastifyInstance> {
  const redisPrefix = `${uniqueName('players')}:`
  const app = await buildApp({ databaseUrl: await playersDatabase(t, 200), redisUrl: testRedisUrl(), redisPrefix, ...options })
  prefixes.set(app, redisPrefix)
  t.teardown(() => app.close())
  await app.ready()
  return app
}

test('GET /players/:id answers from PostgreSQL, says which tier answered, and 404s an unknown player', async (t) => {
  const app = await players(t)
  const response = await app.inject('/players/1')
  t.equal(response.statusCode, 200)
  t.equal(response.headers['x-served-by'], 'primary')
  t.match(response.json(), { id: 1, username: 'player_1', level: Number, score: Number, updatedAt: String })
  const missing = await app.inject('/players/201')
  t.equal(missing.statusCode, 404)
  t.equal(missing.json().message, 'player 201 not found')
})

test('bad ids are 400, never 500', async (t) => {
  const app = await players(t)
  for (const id of ['abc', '0', '-1', '1.5', '99999999999', '1e3x', '%00', 'null']) {
    const response = await app.inject(`/players/${id}`)
    t.equal(response.statusCode, 400, id)
  }
})

test('PUT /players/:id/score updates PostgreSQL and the cache; bad bodies are 400, unknown players 404', async (t) => {
  const app = await players(t)
  const updated = await app.inject({ method: 'PUT', url: '/players/5/score', payload: { score: 123456 } })
  t.equal(updated.statusCode, 200)
  t.equal(updated.json().score, 123456)
  const { rows } = await app.pg.query('SELECT score::int AS score FROM players WHERE id = 5')
  t.equal(rows[0].score, 123456, 'written to PostgreSQL')
  await waitFor('the cached copy to follow', async () => JSON.parse(await app.redis.get(`${prefixOf(app)}player:5`) ?? '{}').score === 123456)
  for (const payload of [{}, { score: -1 }, { score: 'high' }, { score: 1.5 }, 'not json', [1]]) {
    const response = await app.inject({ method: 'PUT', url: '/players/5/score', payload: payload as object, headers: { 'content-type': 'application/json' } })
    t.equal(response.statusCode, 400, JSON.stringify(payload))
  }
  t.equal((await app.inject({ method: 'PUT', url: '/players/9999/score', payload: { score: 1 } })).statusCode, 404)
  t.equal((await app.inject({ method: 'PUT', url: '/players/x/score', payload: { score: 1 } })).statusCode, 400)
})

test('GET /leaderboard lists the best scores, honours limit, and 400s a bad limit', async (t) => {
  const app = await players(t)
  const response = await app.inject('/leaderboard?limit=3')
  t.equal(response.statusCode, 200)
  const board = response.json().players as Array<{ score: number }>
  t.equal(board.length, 3)
  t.ok((board[0]?.score ?? 0) >= (board[1]?.score ?? 0) && (board[1]?.score ?? 0) >= (board[2]?.score ?? 0), 'best first')
  t.equal((await app.inject('/leaderboard')).json().players.length, 10, 'default limit 10')
  for (const limit of ['0', '101', 'ten', '-5']) t.equal((await app.inject(`/leaderboard?limit=${limit}`)).statusCode, 400, limit)
})

test('a disabled flag switches a route off with 503', async (t) => {
  const app = await players(t)
  await app.flags.disable('player_lookup')
  t.equal((await app.inject('/players/1')).json().code, 'FST_RESILIENCE_FEATURE_DISABLED')
  await app.flags.disable('leaderboard')
  t.equal((await app.inject('/leaderboard')).statusCode, 503)
  await app.flags.enable('player_lookup')
  t.equal((await app.inject('/players/1')).statusCode, 200)
})

test('health, metrics and the admin API', async (t) => {
  const app = await players(t, { adminToken: TOKEN })
  t.same((await app.inject('/health/live')).json(), { status: 'ok' })
  const ready = await app.inject('/health/ready')
  t.equal(ready.statusCode, 200)
  t.match(ready.json(), { status: 'ready', draining: false, cache: 'up', flags: { player_lookup: true } })
  await app.inject('/players/1')
  t.match((await app.inject('/metrics')).body, /fallback_total\{name="player",tier="primary"\} 1/)
  t.equal((await app.inject({ method: 'PUT', url: '/admin/flags/leaderboard', payload: { enabled: false } })).statusCode, 401)
  t.equal((await app.inject({ method: 'PUT', url: '/admin/flags/leaderboard', payload: { enabled: false }, headers: { authorization: `Bearer ${TOKEN}` } })).statusCode, 200)
  t.equal((await app.inject('/leaderboard')).statusCode, 503)
  const plain = await players(t)
  t.equal((await plain.inject('/admin/flags')).statusCode, 404, 'no admin routes without a token')
})

test('readiness follows the database breaker: 200 closed or half-open (trial calls need traffic), 503 open or isolated', async (t) => {
  const app = await players(t, { breakerHalfOpenAfterMs: 1000 })
  const ready = async (): Promise<{ status: number, state: unknown }> => {
    const response = await app.inject('/health/ready')
    return { status: response.statusCode, state: response.json().breakers.find((b: { name: string }) => b.name === 'database')?.state }
  }
  t.same(await ready(), { status: 200, state: 'closed' })

  const held = app.breaker('database').isolate()
  t.same(await ready(), { status: 503, state: 'isolated' }, 'held open by hand: not ready')
  held.dispose()
  t.same(await ready(), { status: 200, state: 'closed' }, 'released: ready again')

  const down = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })
  for (let i = 0; i < 5; i++) await app.breaker('database').execute(async () => { throw down }).catch(() => {})
  t.same(await ready(), { status: 503, state: 'open' }, 'open: not ready')
  await waitFor('the breaker to half-open', () => app.breaker('database').state === 'half-open')
  t.same(await ready(), { status: 200, state: 'half-open' }, 'half-open: ready, so that trial calls can arrive')
})

test('buildApp creates the schema on an empty database and seeds no players into it', async (t) => {
  const databaseUrl = await ownDatabase(t)
  const app = await buildApp({ databaseUrl })
  t.teardown(() => app.close())
  const { rows } = await app.pg.query<{ players: number }>('SELECT count(*)::int AS players FROM players')
  t.equal(rows[0]?.players, 0, 'the players table exists and is empty')
  t.equal((await app.inject('/players/1')).statusCode, 404)
})

test('load above the shedding limit: 503 FST_RESILIENCE_OVERLOADED, while health routes still answer', async (t) => {
  const databaseUrl = await playersDatabase(t, 20)
  const app = await buildApp({ databaseUrl, redisUrl: testRedisUrl(), redisPrefix: `${uniqueName('players')}:`, maxConcurrent: 1 })
  t.teardown(() => app.close())
  // Hold player 7's row so that one score update stays in flight.
  const locker = new pg.Client({ connectionString: databaseUrl })
  await locker.connect()
  t.teardown(() => locker.end())
  await locker.query('BEGIN')
  await locker.query('SELECT 1 FROM players WHERE id = 7 FOR UPDATE')
  // (inject is lazy until awaited or then-ed: start it now.)
  const inFlight = Promise.resolve(app.inject({ method: 'PUT', url: '/players/7/score', payload: { score: 70 } }))
  await waitFor('the update to be in flight', () => app.loadShedding.inFlight === 1)
  const refused = await app.inject('/players/1')
  t.equal(refused.statusCode, 503)
  t.equal(refused.json().code, 'FST_RESILIENCE_OVERLOADED')
  t.equal(refused.headers['retry-after'], '5')
  t.equal((await app.inject('/health/live')).statusCode, 200)
  t.equal((await app.inject('/health/ready')).statusCode, 200)
  t.equal((await app.inject('/metrics')).statusCode, 200)
  await locker.query('COMMIT')
  t.equal((await inFlight).statusCode, 200)
})

test('no input tried produces a 500', async (t) => {
  const app = await players(t)
  const requests = [
    { method: 'GET', url: '/players/' }, { method: 'GET', url: '/players/1/extra' }, { method: 'GET', url: '/players/2147483648' },
    { method: 'POST', url: '/players/1' }, { method: 'DELETE', url: '/players/1' }, { method: 'PUT', url: '/players/1/score', payload: '{"score":' },
    { method: 'PUT', url: '/players/1/score', payload: { score: 1e13 } }, { method: 'PUT', url: '/players/1/score', payload: { score: null } },
    { method: 'GET', url: '/leaderboard?limit=1&limit=2' }, { method: 'GET', url: '/leaderboard?extra=1' }, { method: 'GET', url: '/health/ready?x=%ZZ' },
    { method: 'GET', url: '/%' }
  ] as const
  for (const request of requests) {
    const response = await app.inject({ ...request, headers: { 'content-type': 'application/json' } } as never)
    t.ok(response.statusCode < 500, `${request.method} ${request.url} → ${response.statusCode}`)
  }
})

test('the environment is validated at start and a bad value names the variable', async (t) => {
  t.match(readConfig({}), {
    port: 3000, host: '127.0.0.1', databaseUrl: undefined, redisUrl: undefined, redisPrefix: 'players:', maxConcurrent: 1000, sheddingLimit: 'adaptive', breakerHalfOpenAfterMs: 30000, logLevel: 'info'
  })
  t.match(readConfig({
    PORT: '8080', DATABASE_URL: 'postgres://u@h/db', REDIS_URL: 'redis://h:6379', REDIS_PREFIX: 'eu:players:', ADMIN_TOKEN: TOKEN, MAX_CONCURRENT: '50', SHEDDING_LIMIT: 'static', BREAKER_HALF_OPEN_AFTER_MS: '5000', LOG_LEVEL: 'warn', HOST: '0.0.0.0'
  }), { port: 8080, host: '0.0.0.0', databaseUrl: 'postgres://u@h/db', redisUrl: 'redis://h:6379', redisPrefix: 'eu:players:', adminToken: TOKEN, maxConcurrent: 50, sheddingLimit: 'static', breakerHalfOpenAfterMs: 5000, logLevel: 'warn' })
  const bad: Array<[NodeJS.ProcessEnv, RegExp]> = [
    [{ PORT: 'eighty' }, /^PORT must be an integer from 0 to 65535 \(got "eighty"\)$/],
    [{ PORT: '70000' }, /^PORT must be/],
    [{ MAX_CONCURRENT: '0' }, /^MAX_CONCURRENT must be an integer from 1/],
    [{ DATABASE_URL: 'not a url' }, /^DATABASE_URL must be a URL such as postgres:\/\/host:port/],
    [{ DATABASE_URL: 'mysql://h/db' }, /^DATABASE_URL must start with postgres: or postgresql:/],
    [{ REDIS_URL: 'http://h' }, /^REDIS_URL must start with redis: or rediss:/],
    [{ ADMIN_TOKEN: 'short' }, /^ADMIN_TOKEN must be at least 16 characters/],
    [{ LOG_LEVEL: 'loud' }, /^LOG_LEVEL must be one of/],
    [{ REDIS_PREFIX: 'two words' }, /^REDIS_PREFIX must be 1 to 64 characters without spaces/],
    [{ SHEDDING_LIMIT: 'fixed' }, /^SHEDDING_LIMIT must be one of adaptive, static \(got "fixed"\)$/],
    [{ BREAKER_HALF_OPEN_AFTER_MS: '0' }, /^BREAKER_HALF_OPEN_AFTER_MS must be an integer from 1 to 3600000/]
  ]
  for (const [env, message] of bad) t.throws(() => readConfig(env), { message }, JSON.stringify(env))
})

test('without Redis the service runs with the cache tier reported down', async (t) => {
  const app = await buildApp({ databaseUrl: await playersDatabase(t, 20) })
  t.teardown(() => app.close())
  t.equal((await app.inject('/players/3')).statusCode, 200)
  t.match((await app.inject('/health/ready')).json(), { status: 'ready', cache: 'absent' })
})
