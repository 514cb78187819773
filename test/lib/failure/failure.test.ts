/**
 * One rule for "caused by the request": the breaker's default isFailure, the
 * retry's classification and the fallback all follow it. Each case is a real
 * error from a real PostgreSQL.
 */
import fastifyPostgres from '@fastify/postgres'
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import { test } from 'tap'
import { breaker, fallback, isCausedByRequest, isServerFailure, isTransientError, retry } from '../../../plugins/index.js'
import { isRetryExhaustedError } from '../../../plugins/errors.js'
import { testDatabaseUrl, uniqueName } from '../../fixtures/services.js'
import type { Teardown } from '../../fixtures/app.js'

async function build (t: Teardown): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyPostgres, { connectionString: testDatabaseUrl(), max: 2 })
  await app.register(breaker)
  await app.register(retry, { initialDelayMs: 1, jitter: 'none', budget: false })
  await app.register(fallback)
  await app.ready()
  return app
}

/** The error PostgreSQL answers to `sql`. */
async function postgresError (app: FastifyInstance, sql: string, values: unknown[] = []): Promise<Error & { code: string }> {
  const error = await app.pg.query(sql, values).then(() => undefined, (e: unknown) => e)
  if (error === undefined) throw new Error(`expected PostgreSQL to refuse: ${sql}`)
  return error as Error & { code: string }
}

test('errors caused by the request, one per SQLSTATE class, never count, are never retried and never fall back', async (t) => {
  const app = await build(t)
  const table = uniqueName('unique_names')
  await app.pg.query(`CREATE TABLE ${table} (name text PRIMARY KEY)`)
  t.teardown(async () => { await app.pg.query(`DROP TABLE IF EXISTS ${table}`) })
  await app.pg.query(`INSERT INTO ${table} VALUES ('taken')`)

  const cases: Array<[string, string, unknown[], string]> = [
    ['22 data exception: a value out of range', 'SELECT $1::int', ['99999999999'], '22003'],
    ['22 data exception: text that is no integer', 'SELECT $1::int', ['Infinity'], '22P02'],
    ['23 integrity constraint violation', `INSERT INTO ${table} VALUES ($1)`, ['taken'], '23505'],
    ['42 undefined table', 'SELECT * FROM no_such_table_here', [], '42P01'],
    ['42 syntax error', 'SELEC 1', [], '42601']
  ]
  for (const [what, sql, values, sqlstate] of cases) {
    const error = await postgresError(app, sql, values)
    t.equal(error.code, sqlstate, `${what}: PostgreSQL answers ${sqlstate}`)
    t.equal(isCausedByRequest(error), true, `${what}: caused by the request`)
    t.equal(isServerFailure(error), false, `${what}: not a dependency failure`)
    t.equal(isTransientError(error), false, `${what}: not transient`)

    const name = `db-${sqlstate}`
    for (let i = 0; i < 10; i++) {
      await t.rejects(app.breaker(name).execute(async () => await app.pg.query(sql, values)), { code: sqlstate })
    }
    t.equal(app.breaker(name).state, 'closed', `${what}: 10 of them leave the breaker closed`)

    let attempts = 0
    const retried = await app.retry(async () => { attempts++; return await app.pg.query(sql, values) }, { maxRetries: 3 }).catch((e: unknown) => e)
    t.equal(attempts, 1, `${what}: tried once`)
    t.notOk(isRetryExhaustedError(retried), `${what}: thrown unchanged`)
    t.equal((retried as { code?: string }).code, sqlstate)

    await t.rejects(app.fallback<unknown>({
      name: 'row',
      primary: async () => await app.pg.query(sql, values),
      fallback: () => 'a stand-in'
    }), { code: sqlstate }, `${what}: the fallback does not hide it`)
  }
})

test('dependency failures still count: a connection exception opens the breaker and is retried', async (t) => {
  const app = await build(t)
  const connectionLost = Object.assign(new Error('connection failure'), { code: '08006' })
  t.equal(isCausedByRequest(connectionLost), false)
  for (let i = 0; i < 3; i++) await app.breaker('db').execute(async () => { throw connectionLost }).catch(() => {})
  t.equal(app.breaker('db').state, 'open')
  let attempts = 0
  const error = await app.retry(async () => { attempts++; throw connectionLost }, { maxRetries: 2 }).catch((e: unknown) => e)
  t.equal(attempts, 3)
  t.ok(isRetryExhaustedError(error))
})

test('HTTP statuses: 4xx are the request\'s fault except 408 and 429, which say "try again later"', async (t) => {
  const withStatus = (key: 'statusCode' | 'status', value: number): Error => Object.assign(new Error(`status ${value}`), { [key]: value })
  for (const status of [400, 401, 404, 409, 422, 499]) {
    t.equal(isCausedByRequest(withStatus('statusCode', status)), true, `statusCode ${status}`)
    t.equal(isCausedByRequest(withStatus('status', status)), true, `status ${status}`)
    t.equal(isTransientError(withStatus('statusCode', status)), false, `statusCode ${status} is not retried`)
  }
  for (const status of [408, 429, 500, 502, 503]) {
    t.equal(isCausedByRequest(withStatus('statusCode', status)), false, `statusCode ${status}`)
    t.equal(isServerFailure(withStatus('statusCode', status)), true, `statusCode ${status} counts against the dependency`)
  }
  t.equal(isTransientError(withStatus('status', 429)), true, '429 is retried')
  t.equal(isCausedByRequest('a thrown string'), false, 'a non-object is no request error')
  t.equal(isCausedByRequest(Object.assign(new Error('x'), { code: 'ECONNREFUSED' })), false, 'a network code is no SQLSTATE')
  t.equal(isCausedByRequest(Object.assign(new Error('x'), { code: '22' })), false, 'only a five-character code is a SQLSTATE')
})
