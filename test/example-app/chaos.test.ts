// Real faults while traffic flows: PostgreSQL stopped and restarted, Redis
// stopped and paused, both down, writes across a fault. Each test has its
// own PostgreSQL and Redis servers, since it breaks them.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { test } from 'tap'
import { startPostgres, startRedis } from '../../local-services/index.js'
import type { PostgresServer, RedisServer } from '../../local-services/index.js'
import { buildApp } from '../../example-app/app.js'
import { seedDatabase } from '../../example-app/db/seed.js'
import { waitFor } from '../fixtures/wait.js'
import type { Teardown } from '../fixtures/app.js'

interface Stack {
  app: FastifyInstance
  postgres: { server: PostgresServer, restart: () => Promise<void>, stop: () => Promise<void> }
  redis: { server: RedisServer }
}

async function stack (t: Teardown): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), 'chaos-pg-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const [postgresServer, redisServer] = await Promise.all([startPostgres({ dir }), startRedis()])
  const postgres = {
    server: postgresServer,
    stop: async () => { await postgres.server.stop() },
    restart: async () => { postgres.server = await startPostgres({ dir, port: postgresServer.port }) }
  }
  t.teardown(() => postgres.server.stop())
  t.teardown(() => redisServer.stop())
  await seedDatabase(postgresServer.url, 100)
  const app = await buildApp({ databaseUrl: postgresServer.url, redisUrl: redisServer.url, breakerHalfOpenAfterMs: 1000 })
  t.teardown(() => app.close())
  await app.ready()
  return { app, postgres, redis: { server: redisServer } }
}

async function metric (app: FastifyInstance, line: RegExp): Promise<number | undefined> {
  const found = (await app.inject('/metrics')).body.split('\n').find((l) => line.test(l))
  return found === undefined ? undefined : Number(found.split(' ').at(-1))
}

async function warmCache (app: FastifyInstance, ids: number[]): Promise<void> {
  for (const id of ids) await app.inject(`/players/${id}`)
  await waitFor('the players to be cached', async () => (await Promise.all(ids.map(async (id) => await app.redis.exists(`players:player:${id}`)))).every((n) => n === 1))
}

test('PostgreSQL stopped: cached players from Redis, others degraded, no 500; the breaker opens and readiness fails; restarted: it all recovers', async (t) => {
  const { app, postgres } = await stack(t)
  await warmCache(app, [1, 2, 3])
  await postgres.stop()

  const statuses: number[] = []
  const cached = await app.inject('/players/1')
  statuses.push(cached.statusCode)
  t.equal(cached.headers['x-served-by'], 'cache')
  t.equal(cached.json().username, 'player_1')
  const uncached = await app.inject('/players/50')
  statuses.push(uncached.statusCode)
  t.equal(uncached.headers['x-served-by'], 'default')
  t.same(uncached.json(), { id: 50, degraded: true })
  for (let i = 0; i < 10; i++) statuses.push((await app.inject(`/players/${1 + (i % 5)}`)).statusCode)
  t.ok(statuses.every((status) => status === 200), `no 500s: ${statuses.join(' ')}`)

  t.equal(app.breaker('database').state, 'open')
  const ready = await app.inject('/health/ready')
  t.equal(ready.statusCode, 503)
  t.match(ready.json(), { status: 'unavailable', breakers: [{ name: 'database', state: 'open' }] })
  t.equal((await app.inject('/health/live')).statusCode, 200)
  t.equal(await metric(app, /^circuit_breaker_state\{name="database"\}/), 1)
  t.ok((await metric(app, /^fallback_total\{name="player",tier="cache"\}/) ?? 0) >= 1)
  t.ok((await metric(app, /^fallback_total\{name="player",tier="default"\}/) ?? 0) >= 1)

  await postgres.restart()
  await waitFor('primary answers after half-open', async () => (await app.inject('/players/4')).headers['x-served-by'] === 'primary')
  await waitFor('the breaker to close', async () => {
    await app.inject('/players/5')
    return app.breaker('database').state === 'closed'
  })
  t.equal((await app.inject('/health/ready')).statusCode, 200)
})

test('Redis stopped, then paused: primary answers go on without added latency and nothing hangs', async (t) => {
  const { app, redis } = await stack(t)
  await redis.server.stop()
  for (let id = 1; id <= 5; id++) {
    const response = await app.inject(`/players/${id}`)
    t.equal(response.statusCode, 200)
    t.equal(response.headers['x-served-by'], 'primary')
  }
  const restarted = await startRedis({ port: redis.server.port })
  t.teardown(() => restarted.stop())
  await waitFor('the app to reconnect to Redis', () => app.redis.status === 'ready')
  restarted.process.pause()
  t.teardown(() => restarted.process.resume())
  for (let id = 6; id <= 10; id++) {
    const startedAt = Date.now()
    const response = await app.inject(`/players/${id}`)
    const elapsedMs = Date.now() - startedAt
    t.equal(response.headers['x-served-by'], 'primary')
    t.ok(elapsedMs < 1000, `answered in ${elapsedMs} ms with Redis frozen`)
  }
  const board = await app.inject('/leaderboard')
  t.equal(board.statusCode, 200)
})

test('both down: answers come from the default tier or are 503 with Retry-After, always within a bounded time', async (t) => {
  const { app, postgres, redis } = await stack(t)
  await warmCache(app, [1])
  await postgres.stop()
  redis.server.process.pause()
  t.teardown(() => redis.server.process.resume())
  for (const url of ['/players/1', '/players/2', '/leaderboard', '/players/3']) {
    const startedAt = Date.now()
    const response = await app.inject(url)
    const elapsedMs = Date.now() - startedAt
    t.ok(elapsedMs < 5000, `${url} answered in ${elapsedMs} ms`)
    if (response.statusCode === 200) t.match(response.json(), { degraded: true }, `${url} degraded`)
    else {
      t.equal(response.statusCode, 503, url)
      t.ok(response.headers['retry-after'], `${url} says when to retry`)
    }
  }
  const write = await app.inject({ method: 'PUT', url: '/players/1/score', payload: { score: 5 } })
  t.equal(write.statusCode, 503, 'a write is refused, never faked')
})

test('writes while PostgreSQL is down: every answer is 503 with Retry-After, and none names a host, port or driver', async (t) => {
  const { app, postgres } = await stack(t)
  await postgres.stop()
  const codes = new Map<string, number>()
  const startedAt = Date.now()
  // Long enough to see the breaker closed, open, half-open and open again (halfOpenAfterMs: 1000).
  for (let i = 0; Date.now() - startedAt < 2500 || i < 50; i++) {
    const response = await app.inject({ method: 'PUT', url: `/players/${1 + (i % 20)}/score`, payload: { score: i } })
    const body = response.body
    if (response.statusCode !== 503 || response.headers['retry-after'] === undefined ||
        body.includes(String(postgres.server.port)) || body.includes('127.0.0.1') || /ECONN|connect|terminat/i.test(body)) {
      t.fail(`write ${i}: ${response.statusCode} retry-after=${String(response.headers['retry-after'])} ${body}`)
      break
    }
    const code = response.json().code as string
    codes.set(code, (codes.get(code) ?? 0) + 1)
  }
  t.ok((codes.get('FST_RESILIENCE_CIRCUIT_OPEN') ?? 0) > 0, `refused by the open breaker: ${JSON.stringify(Object.fromEntries(codes))}`)
  t.ok([...codes.keys()].every((code) => code.startsWith('FST_RESILIENCE_')), 'only the suite\'s own answers')
})

test('writes across a fault: every acknowledged score update is in the database', async (t) => {
  const { app, postgres } = await stack(t)
  const acknowledged = new Map<number, number>()
  const attempted = new Map<number, number[]>()
  const run = { stopped: false }
  const writer = async (id: number): Promise<void> => {
    for (let score = 1; !run.stopped; score++) {
      attempted.set(id, [...(attempted.get(id) ?? []), score])
      const response = await app.inject({ method: 'PUT', url: `/players/${id}/score`, payload: { score } })
      if (response.statusCode === 200) acknowledged.set(id, score)
      else if (response.statusCode !== 503) t.fail(`unexpected ${response.statusCode}: ${response.body}`)
      // Keep a steady, modest pace rather than a busy loop while the database is down.
      await new Promise((resolve) => setImmediate(resolve))
    }
  }
  const writers = [1, 2, 3].map(writer)
  await waitFor('some writes to land', () => acknowledged.size === 3)
  await postgres.stop()
  await waitFor('writes to be refused', async () => app.breaker('database').state !== 'closed')
  await postgres.restart()
  await waitFor('writes to land again', async () => app.breaker('database').state === 'closed')
  const before = new Map(acknowledged)
  await waitFor('new acknowledged writes', () => [1, 2, 3].every((id) => (acknowledged.get(id) ?? 0) > (before.get(id) ?? 0)))
  run.stopped = true
  await Promise.all(writers)

  const { rows } = await app.pg.query<{ id: number, score: number }>('SELECT id, score::int AS score FROM players WHERE id IN (1, 2, 3) ORDER BY id')
  for (const row of rows) {
    const last = acknowledged.get(row.id) as number
    t.ok(row.score >= last, `player ${row.id}: stored ${row.score} >= last acknowledged ${last}`)
    t.ok(attempted.get(row.id)?.includes(row.score), `player ${row.id}: stored value ${row.score} was one we sent`)
  }
})
