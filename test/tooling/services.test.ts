import fastifyPostgres from '@fastify/postgres'
import fastifyRedis from '@fastify/redis'
import Fastify from 'fastify'
import { test } from 'tap'
import { testDatabaseUrl, testRedisUrl, uniqueName } from '../fixtures/services.js'

test('a real query through @fastify/postgres reaches the throwaway PostgreSQL', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyPostgres, { connectionString: testDatabaseUrl() })
  await app.ready()

  const table = uniqueName('players')
  await app.pg.query(`CREATE TABLE ${table} (id int PRIMARY KEY, name text NOT NULL)`)
  t.teardown(() => app.pg.query(`DROP TABLE IF EXISTS ${table}`))
  await app.pg.query(`INSERT INTO ${table} VALUES ($1, $2)`, [7, 'Ada'])
  const { rows } = await app.pg.query(`SELECT name, current_setting('server_version_num')::int AS version FROM ${table} WHERE id = $1`, [7])

  t.equal(rows[0].name, 'Ada')
  t.ok(rows[0].version >= 100000, 'answered by a real PostgreSQL server')
})

test('a real SET/GET through @fastify/redis reaches the throwaway Redis', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyRedis, { url: testRedisUrl() })
  await app.ready()

  const key = uniqueName('foundation')
  t.teardown(() => app.redis.del(key))
  await app.redis.set(key, 'hello', 'EX', 60)
  t.equal(await app.redis.get(key), 'hello')
  t.match(await app.redis.info('server'), /redis_version:\d/, 'answered by a real Redis server')
})
