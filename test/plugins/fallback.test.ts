import fastifyPostgres from '@fastify/postgres'
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { test } from 'tap'
import { startPostgres, startRedis } from '../../local-services/index.js'
import { fallback, metrics } from '../../plugins/index.js'
import type { FallbackOptions, FallbackPluginOptions } from '../../plugins/fallback.js'
import { isTimeoutError } from '../../plugins/errors.js'
import { deferred } from '../fixtures/clock.js'
import { captureLogs } from '../fixtures/logs.js'
import { testDatabaseUrl, testRedisUrl, uniqueName } from '../fixtures/services.js'
import { waitFor, within } from '../fixtures/wait.js'
import type { Teardown } from '../fixtures/app.js'

interface Player { id: number, name: string, score: number }

interface Setup {
  app: FastifyInstance
  redis: Redis
  logs: ReturnType<typeof captureLogs>
  table: string
  /** The three tiers of a player lookup: PostgreSQL, then Redis, then a degraded stub. */
  lookup: (id: number, extra?: Partial<FallbackOptions<Player>>) => FallbackOptions<Player>
}

async function setup (t: Teardown, urls: { database: string, redis: string }, options: FallbackPluginOptions = {}, routes?: (app: FastifyInstance, s: Omit<Setup, 'app' | 'logs'>) => void): Promise<Setup> {
  const logs = captureLogs()
  const app = Fastify({ logger: { level: 'info', stream: logs.stream } })
  t.teardown(() => app.close())
  const redis = new Redis(urls.redis, { maxRetriesPerRequest: 1 })
  redis.on('error', () => {})
  t.teardown(() => redis.disconnect())
  await app.register(fastifyPostgres, { connectionString: urls.database, connectionTimeoutMillis: 2000 })
  await app.register(metrics)
  await app.register(fallback, options)
  const table = uniqueName('players')
  const key = (id: number): string => `${table}:${id}`
  const lookup = (id: number, extra: Partial<FallbackOptions<Player>> = {}): FallbackOptions<Player> => ({
    name: 'player',
    primary: async () => {
      const { rows } = await app.pg.query<Player>(`SELECT id, name, score FROM ${table} WHERE id = $1`, [id])
      if (rows[0] === undefined) throw Object.assign(new Error(`player ${id} not found`), { statusCode: 404 })
      return rows[0]
    },
    cache: async () => {
      const cached = await redis.get(key(id))
      return cached === null ? undefined : JSON.parse(cached) as Player
    },
    store: async (player) => await redis.set(key(id), JSON.stringify(player), 'EX', 300),
    fallback: () => ({ id, name: 'unknown player', score: 0 }),
    ...extra
  })
  routes?.(app, { redis, table, lookup })
  await app.ready()
  // An idle pooled connection reports a stopped server as a pool 'error' event; an app must listen.
  app.pg.pool.on('error', (error) => app.log.warn({ err: error }, 'idle PostgreSQL connection lost'))
  await app.pg.query(`CREATE TABLE ${table} (id int PRIMARY KEY, name text NOT NULL, score int NOT NULL)`)
  await app.pg.query(`INSERT INTO ${table} VALUES (1, 'Ada', 42), (2, 'Grace', 37)`)
  return { app, redis, logs, table, lookup }
}

const shared = (): { database: string, redis: string } => ({ database: testDatabaseUrl(), redis: testRedisUrl() })
const down = (): Error => Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })

async function fallbackTotal (app: FastifyInstance, tier: string): Promise<number | undefined> {
  const line = (await app.inject('/metrics')).body.split('\n').find((l) => l.startsWith(`fallback_total{name="player",tier="${tier}"}`))
  return line === undefined ? undefined : Number(line.split(' ').at(-1))
}

test('each path: primary, cache, default and failed, counted in /metrics', async (t) => {
  const { app, redis, table, lookup } = await setup(t, shared())

  const first = await app.fallback(lookup(1))
  t.same(first, { value: { id: 1, name: 'Ada', score: 42 }, tier: 'primary' })
  await waitFor('the write-through', async () => await redis.get(`${table}:1`) !== null)
  t.same(JSON.parse(await redis.get(`${table}:1`) as string), { id: 1, name: 'Ada', score: 42 }, 'after a primary success the cache holds the value')

  const cached = await app.fallback(lookup(1, { primary: async () => { throw down() } }))
  t.same(cached, { value: { id: 1, name: 'Ada', score: 42 }, tier: 'cache' })

  let seen: unknown[] = []
  const degraded = await app.fallback(lookup(2, {
    primary: async () => { throw down() },
    fallback: ({ errors }) => { seen = errors; return { id: 2, name: 'unknown player', score: 0 } }
  }))
  t.same(degraded, { value: { id: 2, name: 'unknown player', score: 0 }, tier: 'default' }, 'a cache miss falls through to the default')
  t.equal(seen.length, 1)
  t.match(seen[0], { code: 'ECONNREFUSED' }, 'the default tier sees why the others failed')

  const lastResort = new Error('no default either')
  await t.rejects(app.fallback(lookup(2, { primary: async () => { throw down() }, fallback: () => { throw lastResort } })), lastResort)

  t.equal(await fallbackTotal(app, 'primary'), 1)
  t.equal(await fallbackTotal(app, 'cache'), 1)
  t.equal(await fallbackTotal(app, 'default'), 1)
  t.equal(await fallbackTotal(app, 'failed'), 1)
})

test('a failing write-through is logged and never fails the call', async (t) => {
  const { app, logs, lookup } = await setup(t, shared())
  const result = await app.fallback(lookup(1, { store: async () => { throw new Error('cache is read-only') } }))
  t.equal(result.tier, 'primary')
  await waitFor('the write-through failure to be logged', () => logs.lines.some((line) => line.msg === 'fallback "player": write-through failed'))
  t.match(logs.lines.find((line) => line.msg === 'fallback "player": write-through failed'), { level: 40, tier: 'store', err: { message: 'cache is read-only' } })
})

test('without a cache tier a failed primary goes straight to the default, which sees the primary\'s error', async (t) => {
  const { app, lookup } = await setup(t, shared())
  let seen: unknown[] = []
  const result = await app.fallback(lookup(1, {
    primary: async () => { throw down() },
    cache: undefined,
    fallback: ({ errors }) => { seen = [...errors]; return { id: 1, name: 'unknown player', score: 0 } }
  }))
  t.same(result, { value: { id: 1, name: 'unknown player', score: 0 }, tier: 'default' })
  t.match(seen, [{ code: 'ECONNREFUSED' }], 'only the primary failed before it')
  t.equal(await fallbackTotal(app, 'default'), 1)
  t.equal(await fallbackTotal(app, 'cache'), undefined, 'no cache tier ran')
})

test('a "not found" from the primary propagates as it is: no cached or default stand-in', async (t) => {
  const { app, lookup } = await setup(t, shared())
  let fellBack = false
  const error = await app.fallback(lookup(99, {
    cache: async () => { fellBack = true; return undefined },
    fallback: () => { fellBack = true; return { id: 99, name: 'ghost', score: 0 } }
  })).catch((e: unknown) => e)
  t.match(error, { statusCode: 404, message: 'player 99 not found' })
  t.equal(fellBack, false)
})

test('a 400, 409 or 422 from the primary propagates as it is: a cached value or the default never replaces a client error', async (t) => {
  const { app, lookup } = await setup(t, shared())
  for (const statusCode of [400, 409, 422]) {
    const rejected = Object.assign(new Error(`rejected with ${statusCode}`), { statusCode })
    const tiersRun: string[] = []
    const error = await app.fallback(lookup(1, {
      primary: async () => { throw rejected },
      cache: async () => { tiersRun.push('cache'); return { id: 1, name: 'Ada (cached)', score: 42 } },
      fallback: () => { tiersRun.push('default'); return { id: 1, name: 'unknown player', score: 0 } }
    })).catch((e: unknown) => e)
    t.equal(error, rejected, `${statusCode}: the primary's error itself`)
    t.same(tiersRun, [], `${statusCode}: neither the cache nor the default tier ran`)
  }
  t.equal(await fallbackTotal(app, 'primary'), 3, 'each answered by the primary')
  t.equal(await fallbackTotal(app, 'cache'), undefined)
  t.equal(await fallbackTotal(app, 'default'), undefined)
})

test('a slow write-through never delays the answer: the value is returned while store is still pending', async (t) => {
  const { app, lookup } = await setup(t, shared())
  const storeStarted = deferred<Player>()
  const storeMayFinish = deferred()
  let storeFinished = false
  t.teardown(() => storeMayFinish.resolve())
  const result = await within('the primary\'s answer while its write-through is still pending', app.fallback(lookup(1, {
    // Longer than the wait for the answer: a store awaited before the reply cannot end early at its own deadline.
    timeoutMs: { store: 60_000 },
    store: async (player) => {
      storeStarted.resolve(player)
      await storeMayFinish.promise
      storeFinished = true
    }
  })))
  t.same(result, { value: { id: 1, name: 'Ada', score: 42 }, tier: 'primary' })
  t.equal(storeFinished, false, 'the answer came before store finished')
  t.same(await within('the write-through to start after the answer', storeStarted.promise), { id: 1, name: 'Ada', score: 42 }, 'store still receives the value')
  storeMayFinish.resolve()
  await waitFor('the write-through to finish once released', () => storeFinished)
})

test('with PostgreSQL stopped a value cached earlier comes from the cache; with Redis paused too the default answers within the cache timeout', async (t) => {
  const [postgres, redisServer] = await Promise.all([startPostgres(), startRedis()])
  t.teardown(() => postgres.stop())
  t.teardown(() => redisServer.stop())
  const { app, redis, table, lookup } = await setup(t, { database: postgres.url, redis: redisServer.url })

  t.equal((await app.fallback(lookup(1))).tier, 'primary')
  await waitFor('the write-through', async () => await redis.get(`${table}:1`) !== null)

  await postgres.stop()
  const fromCache = await app.fallback(lookup(1))
  t.same(fromCache, { value: { id: 1, name: 'Ada', score: 42 }, tier: 'cache' }, 'served from Redis while PostgreSQL is down')

  redisServer.process.pause()
  t.teardown(() => redisServer.process.resume())
  let errors: unknown[] = []
  const startedAt = Date.now()
  const degraded = await within('an answer while Redis is paused (the cache tier\'s timeout should cut it)', app.fallback(lookup(1, { fallback: (context) => { errors = context.errors; return { id: 1, name: 'unknown player', score: 0 } } })))
  const elapsedMs = Date.now() - startedAt
  t.equal(degraded.tier, 'default')
  t.ok(elapsedMs < 100 + 1500, `answered in ${elapsedMs} ms: the 100 ms cache deadline plus a margin, not after seconds`)
  t.equal(errors.length, 2)
  t.ok(isTimeoutError(errors[1]), 'the paused cache was cut by its timeout')
  t.match((errors[1] as Error).message, 'operation timed out after 100 ms')
})

test('tier failures are logged at warn with the tier and, from a route, the request id', async (t) => {
  const { app, logs } = await setup(t, shared(), {}, (instance, { lookup }) => {
    instance.get('/players/:id', async (request) => {
      const id = Number((request.params as { id: string }).id)
      const { value, tier } = await instance.fallback(lookup(id, { primary: async () => { throw down() }, logger: request.log }))
      return { ...value, tier }
    })
  })
  const response = await app.inject('/players/2')
  t.same(response.json(), { id: 2, name: 'unknown player', score: 0, tier: 'default' })
  const line = logs.lines.find((l) => l.msg === 'fallback "player": primary tier failed')
  t.match(line, { level: 40, fallback: 'player', tier: 'primary', err: { code: 'ECONNREFUSED' } })
  t.type(line?.reqId, 'string', 'the line carries the request id')
  t.equal(line?.reqId, logs.lines.find((l) => l.msg === 'incoming request')?.reqId)
})

test('per-tier timeouts cut a slow primary too, and plugin defaults can be overridden per call', async (t) => {
  const { app, lookup } = await setup(t, shared(), { timeoutMs: { primary: 50 } })
  let primarySignal: AbortSignal | undefined
  const slow = await within('an answer after the never-ending primary (its 50 ms timeout should cut it)', app.fallback(lookup(1, { primary: async ({ signal }) => { primarySignal = signal; return await new Promise<never>(() => {}) } })))
  t.equal(slow.tier, 'default', 'the slow primary was cut after 50 ms; with nothing cached the default answered')
  t.equal(primarySignal?.aborted, true, 'the cut tier\'s signal aborted')
  const patient = await app.fallback(lookup(2, { timeoutMs: { primary: 5000 } }))
  t.equal(patient.tier, 'primary')
})

test('a caller that gives up stops the chain: no further tier runs', async (t) => {
  const { app, lookup } = await setup(t, shared())
  const controller = new AbortController()
  let laterTiers = 0
  const outcome = app.fallback(lookup(1, {
    signal: controller.signal,
    timeoutMs: { primary: 10_000 },
    primary: async ({ signal }) => await new Promise<never>((_resolve, reject) => signal.addEventListener('abort', () => reject(new Error('cancelled')))),
    cache: async () => { laterTiers++; return undefined },
    fallback: () => { laterTiers++; return { id: 1, name: 'x', score: 0 } }
  }))
  controller.abort(new Error('client went away'))
  await t.rejects(outcome)
  t.equal(laterTiers, 0)
})

test('bad options fail with a TypeError naming the option', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [{ timeoutMs: { cache: 0 } }, /^fastify-resilience-fallback: "timeoutMs.cache" must be a number >= 1 \(got 0\)$/],
    [{ timeoutMs: { cachee: 10 } }, /unknown option "timeoutMs.cachee"/],
    [{ timeout: 10 }, /unknown option "timeout"/]
  ]
  for (const [options, message] of cases) {
    const app = Fastify()
    t.teardown(() => app.close())
    await t.rejects(async () => { await app.register(fallback, options as FallbackPluginOptions) }, { name: 'TypeError', message }, JSON.stringify(options))
  }
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fallback)
  const ok = { name: 'player', primary: () => 1, fallback: () => 0 }
  await t.rejects(app.fallback({ primary: () => 1, fallback: () => 0 } as never), { name: 'TypeError', message: 'fastify-resilience-fallback: fallback() needs "name", "primary" and "fallback"' })
  await t.rejects(app.fallback({ ...ok, name: 'player 7' }), { name: 'TypeError', message: /"fallback\(\).name" must be a name of 1 to 64/ })
  await t.rejects(app.fallback({ ...ok, primary: 'db' as never }), { name: 'TypeError', message: /"fallback\(\).primary" must be a function \(got "db"\)/ })
  await t.rejects(app.fallback({ ...ok, cache: 42 as never }), { name: 'TypeError', message: /"fallback\(\).cache" must be a function \(got 42\)/ })
  await t.rejects(app.fallback({ ...ok, timeoutMs: { store: -5 } }), { name: 'TypeError', message: /"fallback\(\).timeoutMs.store" must be a number >= 1 \(got -5\)/ })
  await t.rejects(app.fallback({ ...ok, primaryFn: () => 1 } as never), { name: 'TypeError', message: /unknown option "fallback\(\).primaryFn"/ })
  t.same(await app.fallback(ok), { value: 1, tier: 'primary' }, 'the minimal call works without cache or store')
})

test('registering the fallback plugin twice in one scope fails loudly', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fallback)
  await t.rejects(async () => { await app.register(fallback) }, /fastify-resilience-fallback has already been registered/)
})
