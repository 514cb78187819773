// Junk input over real HTTP against the example app: every malformed id,
// query and body is a 4xx with a JSON error body, never a 5xx; nothing is
// written; and the database breaker is still closed afterwards, so junk can
// never take the database out of service.
import { request as httpRequest } from 'node:http'
import type { FastifyInstance } from 'fastify'
import { test } from 'tap'
import { buildApp } from '../../example-app/app.js'
import { testRedisUrl, uniqueName } from '../fixtures/services.js'
import type { Teardown } from '../fixtures/app.js'
import { playersDatabase } from './fixtures/players-database.js'

interface Answer { status: number, contentType: string, body: string }

async function players (t: Teardown): Promise<{ app: FastifyInstance, port: number }> {
  const app = await buildApp({ databaseUrl: await playersDatabase(t, 20), redisUrl: testRedisUrl(), redisPrefix: `${uniqueName('junk')}:` })
  t.teardown(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, port: (app.server.address() as { port: number }).port }
}

/** One real HTTP request; `body` is sent as it is. */
async function send (port: number, method: string, path: string, body?: string | Buffer, contentType = 'application/json'): Promise<Answer> {
  return await new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = {}
    if (body !== undefined) {
      headers['content-type'] = contentType
      headers['content-length'] = Buffer.byteLength(body)
    }
    const request = httpRequest({ host: '127.0.0.1', port, method, path, headers, agent: false }, (response) => {
      let text = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => { text += chunk })
      response.on('end', () => resolve({ status: response.statusCode ?? 0, contentType: String(response.headers['content-type']), body: text }))
    })
    request.on('error', reject)
    request.end(body)
  })
}

const JUNK_IDS = [
  '-1', '0', '1e99', 'Infinity', '-Infinity', 'NaN', '1.5', '2147483648', '99999999999', '1e3', '0x10', '01', '+1', '%201', '1%20',
  '%00', 'null', 'true', 'abc', '1%3B%20DROP%20TABLE%20players', "1'%20OR%20'1'%3D'1", 'x'.repeat(5_000)
]

const JUNK_BODIES: Array<[string, string | Buffer, string?]> = [
  ['a boolean score', '{"score": true}'],
  ['a score in an array', '{"score": [3]}'],
  ['a null score', '{"score": null}'],
  ['a score as text', '{"score": "5"}'],
  ['a fractional score', '{"score": 1.5}'],
  ['a negative score', '{"score": -1}'],
  ['a huge score', '{"score": 1e300}'],
  ['no score', '{}'],
  ['null', 'null'],
  ['an array', '[{"score": 1}]'],
  ['a string', '"score"'],
  ['a number', '42'],
  ['__proto__', '{"__proto__": {"score": 1}, "score": 1}'],
  ['constructor.prototype', '{"constructor": {"prototype": {"score": 1}}, "score": 1}'],
  ['broken JSON', '{"score": '],
  ['an empty body', ''],
  ['1.2 MB', `{"score": 1, "padding": "${'x'.repeat(1_200_000)}"}`],
  ['text/plain', 'score=1', 'text/plain'],
  ['a form', 'score=1', 'application/x-www-form-urlencoded'],
  ['no content type', '{"score": 1}', '']
]

function isJsonError (answer: Answer): boolean {
  if (!answer.contentType.startsWith('application/json')) return false
  const parsed = JSON.parse(answer.body) as { statusCode?: unknown, message?: unknown }
  return parsed.statusCode === answer.status && typeof parsed.message === 'string'
}

test('junk ids, queries and bodies: each a 4xx with a JSON error body, no 5xx, no write, and the breaker still closed', async (t) => {
  const { app, port } = await players(t)
  const before = await app.pg.query<{ id: number, score: number }>('SELECT id, score::float8 AS score FROM players ORDER BY id')
  const fiveHundreds: string[] = []
  const check = (what: string, answer: Answer): void => {
    if (answer.status >= 500) fiveHundreds.push(`${what}: ${answer.status} ${answer.body.slice(0, 200)}`)
    t.ok(answer.status >= 400 && answer.status < 500, `${what}: ${answer.status}`)
    t.ok(isJsonError(answer), `${what}: a JSON error body`)
  }

  for (const id of JUNK_IDS) {
    const label = id.length > 40 ? `${id.slice(0, 10)}... (${id.length} characters)` : id
    // Ten of each, as an attacker trying to open the breaker would send.
    for (let i = 0; i < 10; i++) check(`GET /players/${label}`, await send(port, 'GET', `/players/${id}`))
    check(`PUT /players/${label}/score`, await send(port, 'PUT', `/players/${id}/score`, '{"score": 7}'))
  }
  for (const limit of ['0', '101', '-1', 'Infinity', '1e3', '1.5', 'ten', '']) {
    check(`GET /leaderboard?limit=${limit}`, await send(port, 'GET', `/leaderboard?limit=${limit}`))
  }
  for (const [what, body, contentType] of JUNK_BODIES) {
    check(`PUT /players/1/score with ${what}`, await send(port, 'PUT', '/players/1/score', body, contentType))
  }

  t.same(fiveHundreds, [], 'no 5xx at all')
  t.equal(app.breaker('database').state, 'closed', 'junk never opens the database breaker')
  t.same(app.breaker('database').toJSON().window, { calls: 0, failures: 0 }, 'junk never even reached it')
  const after = await app.pg.query<{ id: number, score: number }>('SELECT id, score::float8 AS score FROM players ORDER BY id')
  t.same(after.rows, before.rows, 'no score changed')
  const real = await send(port, 'GET', '/players/1')
  t.equal(real.status, 200)
  t.equal(JSON.parse(real.body).id, 1, 'a real request is served by PostgreSQL, not a fallback')
})

test('the highest id PostgreSQL holds is looked up (404 here), one more is a 400', async (t) => {
  const { port } = await players(t)
  const highest = await send(port, 'GET', '/players/2147483647')
  t.equal(highest.status, 404)
  t.equal(JSON.parse(highest.body).message, 'player 2147483647 not found')
  t.equal((await send(port, 'GET', '/players/2147483648')).status, 400)
  t.equal((await send(port, 'GET', '/leaderboard?limit=100')).status, 200)
  t.equal((await send(port, 'PUT', '/players/3/score', '{"score": 1000}')).status, 200, 'a good write still lands')
})

test('an error the request caused that no schema caught is a 400; other failures say nothing of internals', async (t) => {
  const app = await buildApp({ databaseUrl: await playersDatabase(t, 1) })
  t.teardown(() => app.close())
  // Routes a careless app might have: no schema, and an error that names a host.
  app.get('/raw/:value', async (request) => await app.pg.query('SELECT $1::int AS value', [(request.params as { value: string }).value]))
  app.get('/broken', async () => { throw new Error('connect ECONNREFUSED 10.1.2.3:5432') })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port

  const refused = await send(port, 'GET', '/raw/99999999999')
  t.equal(refused.status, 400, 'PostgreSQL\'s 22003 becomes a 400')
  t.notMatch(refused.body, 'out of range', 'without PostgreSQL\'s message')
  const broken = await send(port, 'GET', '/broken')
  t.equal(broken.status, 500)
  t.same(JSON.parse(broken.body), { statusCode: 500, error: 'Internal Server Error', message: 'internal error' })
})
