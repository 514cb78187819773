import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import { test } from 'tap'
import { flags, metrics } from '../../plugins/index.js'
import type { FlagsPluginOptions } from '../../plugins/flags.js'
import { captureLogs } from '../fixtures/logs.js'
import type { Teardown } from '../fixtures/app.js'

const TOKEN = 'admin-token-0123456789'

async function build (t: Teardown, options: FlagsPluginOptions = {}, setup?: (app: FastifyInstance) => void, logs?: ReturnType<typeof captureLogs>): Promise<FastifyInstance> {
  const app = Fastify(logs === undefined ? {} : { logger: { level: 'info', stream: logs.stream } })
  t.teardown(() => app.close())
  await app.register(metrics)
  await app.register(flags, options)
  setup?.(app)
  await app.ready()
  return app
}

test('an unknown flag is enabled; defaults and defaultEnabled set the starting values', async (t) => {
  const app = await build(t, { defaults: { player_lookup: false, recommendations: { percentage: 100 } } })
  t.equal(app.flags.isEnabled('never_set'), true, 'unknown flags are enabled, as in the Go template')
  t.equal(app.flags.isEnabled('player_lookup'), false)
  t.equal(app.flags.isEnabled('recommendations'), true, '100 % is on for everyone')
  t.same(app.flags.list(), { player_lookup: false, recommendations: { percentage: 100 } })

  const strict = await build(t, { defaultEnabled: false })
  t.equal(strict.flags.isEnabled('never_set'), false)
})

test('set, enable and disable change the value and tell the change listeners', async (t) => {
  const app = await build(t)
  const changes: unknown[] = []
  const subscription = app.flags.onChange((name, value, previous) => changes.push([name, value, previous]))
  await app.flags.disable('player_lookup')
  t.equal(app.flags.isEnabled('player_lookup'), false)
  await app.flags.disable('player_lookup')
  await app.flags.enable('player_lookup')
  await app.flags.set('recommendations', { percentage: 25 })
  t.same(changes, [['player_lookup', false, undefined], ['player_lookup', true, false], ['recommendations', { percentage: 25 }, undefined]], 'a repeated value is not a change')
  subscription.dispose()
  await app.flags.disable('player_lookup')
  t.equal(changes.length, 3, 'a disposed listener hears nothing')
  t.same(app.flags.get('recommendations'), { percentage: 25 })
})

test('a failing change listener is logged and does not stop the others', async (t) => {
  const logs = captureLogs()
  const app = await build(t, {}, undefined, logs)
  let heard = 0
  app.flags.onChange(() => { throw new Error('listener broke') })
  app.flags.onChange(() => { heard++ })
  await app.flags.disable('x')
  t.equal(heard, 1)
  t.match(logs.lines.find((line) => line.msg === 'feature flags: a change listener failed'), { level: 50, err: { message: 'listener broke' } })
})

test('bad flag names and values are refused with a TypeError', async (t) => {
  const app = await build(t)
  await t.rejects(app.flags.set('Player Lookup', true), { name: 'TypeError', message: /"name" must be a flag name: a lowercase letter, then up to 63 of a-z, 0-9, "_", "\." or "-" \(got "Player Lookup"\)/ })
  await t.rejects(app.flags.set('ok', 'yes' as never), { name: 'TypeError', message: /"value" must be true, false or \{ percentage: 0-100 \} \(got "yes"\)/ })
  await t.rejects(app.flags.set('ok', { percentage: 101 }), { name: 'TypeError', message: /"value" must be true, false or \{ percentage: 0-100 \}/ })
  await t.rejects(app.flags.set('ok', { percentage: 5, extra: 1 } as never), { name: 'TypeError' })
  await t.rejects(app.flags.set(undefined as never, true), { name: 'TypeError', message: /"name" must be a flag name.* \(got undefined\)/ })
})

test('percentage rollout: the same key always gets the same answer', async (t) => {
  const app = await build(t, { defaults: { recommendations: { percentage: 25 } } })
  for (let i = 0; i < 200; i++) {
    const key = `user-${i}`
    const first = app.flags.isEnabled('recommendations', { key })
    for (let again = 0; again < 3; again++) t.equal(app.flags.isEnabled('recommendations', { key }), first, key)
  }
  t.equal(app.flags.isEnabled('recommendations'), false, 'without a key a partial rollout is off')
  await app.flags.set('recommendations', { percentage: 0 })
  t.equal(app.flags.isEnabled('recommendations', { key: 'user-1' }), false, '0 % is off for everyone')
})

test('percentage rollout: 25 % enables 25 ± 2 % of 10 000 keys, and a wider rollout keeps the earlier keys', async (t) => {
  const app = await build(t, { defaults: { recommendations: { percentage: 25 } } })
  const keys = Array.from({ length: 10_000 }, (_, i) => `user-${i}`)
  const enabledAt25 = keys.filter((key) => app.flags.isEnabled('recommendations', { key }))
  t.ok(enabledAt25.length >= 2300 && enabledAt25.length <= 2700, `${enabledAt25.length / 100} % enabled`)
  await app.flags.set('recommendations', { percentage: 50 })
  const enabledAt50 = keys.filter((key) => app.flags.isEnabled('recommendations', { key }))
  t.ok(enabledAt50.length >= 4800 && enabledAt50.length <= 5200, `${enabledAt50.length / 100} % enabled at 50 %`)
  t.ok(enabledAt25.every((key) => app.flags.isEnabled('recommendations', { key })), 'raising the share never turns anyone off')
  const other = keys.filter((key) => app.flags.isEnabled('other_feature', { key }))
  t.equal(other.length, 10_000, 'another flag (unknown, so enabled) is independent')
})

test('a route with a disabled flag answers 503 without running its handler; enabled again it answers 200', async (t) => {
  let handled = 0
  const app = await build(t, { defaults: { player_lookup: true } }, (instance) => {
    instance.get('/players/:id', { config: { resilience: { flag: 'player_lookup' } } }, async () => { handled++; return { id: 1 } })
    instance.get('/unflagged', { config: { resilience: false } }, async () => 'ok')
  })
  t.equal((await app.inject('/players/1')).statusCode, 200)
  await app.flags.disable('player_lookup')
  const refused = await app.inject('/players/1')
  t.equal(refused.statusCode, 503)
  t.same(refused.json(), { statusCode: 503, code: 'FST_RESILIENCE_FEATURE_DISABLED', error: 'Service Unavailable', message: 'feature "player_lookup" is disabled' })
  t.equal(handled, 1, 'the handler did not run while disabled')
  await app.flags.enable('player_lookup')
  t.equal((await app.inject('/players/1')).statusCode, 200)
  t.equal(handled, 2)
  t.equal((await app.inject('/unflagged')).statusCode, 200)
})

test('the flag check runs after the route\'s own onRequest hooks', async (t) => {
  const order: string[] = []
  const app = await build(t, { defaults: { gated: false } }, (instance) => {
    instance.get('/gated', {
      onRequest: async () => { order.push('route hook') },
      config: { resilience: { flag: 'gated' } }
    }, async () => 'never')
    instance.get('/gated-twice', {
      onRequest: [async () => { order.push('first') }, async () => { order.push('second') }],
      config: { resilience: { flag: 'gated' } }
    }, async () => 'never')
  })
  t.equal((await app.inject('/gated')).statusCode, 503)
  t.equal((await app.inject('/gated-twice')).statusCode, 503)
  t.same(order, ['route hook', 'first', 'second'])
})

test('a route flag unknown at start-up follows the default; an invalid name fails at ready()', async (t) => {
  const app = await build(t, {}, (instance) => {
    instance.get('/new', { config: { resilience: { flag: 'brand_new_feature' } } }, async () => 'ok')
  })
  t.equal((await app.inject('/new')).statusCode, 200)

  const broken = Fastify()
  t.teardown(() => broken.close())
  await broken.register(flags)
  broken.register(async (scope) => {
    scope.get('/typo', { config: { resilience: { flag: 'Player-Lookup' } } }, async () => 'never')
  })
  await t.rejects(async () => { await broken.ready() }, { name: 'TypeError', message: /^fastify-resilience-flags: route "GET \/typo": "config.resilience.flag" must be a flag name.*\(got "Player-Lookup"\)$/ })

  const notObject = Fastify()
  t.teardown(() => notObject.close())
  await notObject.register(flags)
  notObject.register(async (scope) => {
    scope.get('/bad', { config: { resilience: 'player_lookup' as never } }, async () => 'never')
  })
  await t.rejects(async () => { await notObject.ready() }, { name: 'TypeError', message: 'fastify-resilience: route "GET /bad": "config.resilience" must be an object or false (got "player_lookup")' })

  const manyMethods = Fastify()
  t.teardown(() => manyMethods.close())
  await manyMethods.register(flags)
  manyMethods.register(async (scope) => {
    scope.route({ method: ['GET', 'POST'], url: '/both', config: { resilience: { flag: '9lives' } }, handler: async () => 'never' })
  })
  await t.rejects(async () => { await manyMethods.ready() }, { name: 'TypeError', message: /^fastify-resilience-flags: route "GET,POST \/both": "config.resilience.flag" must be a flag name/ })
})

test('the admin API answers 401 without or with a wrong token, 400 on a bad body, 200 with an audit line', async (t) => {
  const logs = captureLogs()
  const app = await build(t, { admin: { token: TOKEN } }, undefined, logs)
  const auth = { authorization: `Bearer ${TOKEN}` }

  const missing = await app.inject({ method: 'PUT', url: '/admin/flags/player_lookup', payload: { enabled: false } })
  t.equal(missing.statusCode, 401)
  t.equal(missing.json().code, 'FST_RESILIENCE_UNAUTHORIZED')
  const wrong = await app.inject({ method: 'PUT', url: '/admin/flags/player_lookup', payload: { enabled: false }, headers: { authorization: 'Bearer admin-token-0123456780' } })
  t.equal(wrong.statusCode, 401)
  t.equal((await app.inject({ url: '/admin/flags' })).statusCode, 401)
  t.equal(app.flags.isEnabled('player_lookup'), true, 'refused requests changed nothing')

  for (const payload of [{ enabled: 'no' }, { percentage: 101 }, { percentage: 10, enabled: true }, { something: 1 }, []]) {
    const bad = await app.inject({ method: 'PUT', url: '/admin/flags/player_lookup', payload, headers: auth })
    t.equal(bad.statusCode, 400, JSON.stringify(payload))
  }
  t.equal((await app.inject({ method: 'PUT', url: '/admin/flags/Bad%20Name', payload: { enabled: true }, headers: auth })).statusCode, 400, 'a bad flag name')

  const ok = await app.inject({ method: 'PUT', url: '/admin/flags/player_lookup', payload: { enabled: false }, headers: auth })
  t.equal(ok.statusCode, 200)
  t.same(ok.json(), { name: 'player_lookup', value: false })
  t.equal(app.flags.isEnabled('player_lookup'), false)
  const rollout = await app.inject({ method: 'PUT', url: '/admin/flags/recommendations', payload: { percentage: 25 }, headers: auth })
  t.same(rollout.json(), { name: 'recommendations', value: { percentage: 25 } })

  const audit = logs.lines.find((line) => line.msg === 'feature flag "player_lookup" changed')
  t.match(audit, { level: 30, flag: 'player_lookup', previous: null, value: false })
  t.type(audit?.reqId, 'string', 'the audit line carries the request id')

  const list = await app.inject({ url: '/admin/flags', headers: auth })
  t.same(list.json(), { defaultEnabled: true, flags: { player_lookup: false, recommendations: { percentage: 25 } } })
})

test('without an admin token there are no admin routes; a custom prefix moves them', async (t) => {
  const plain = await build(t)
  t.equal((await plain.inject({ url: '/admin/flags' })).statusCode, 404)
  const custom = await build(t, { admin: { token: TOKEN, prefix: '/ops/v1' } })
  t.equal((await custom.inject({ url: '/ops/v1/flags', headers: { authorization: `Bearer ${TOKEN}` } })).statusCode, 200)
})

test('feature_flag_enabled shows 1, 0 and the enabled share of a rollout', async (t) => {
  const app = await build(t, { defaults: { on: true, off: false, rollout: { percentage: 25 } } })
  const body = (await app.inject('/metrics')).body
  t.match(body, /^feature_flag_enabled\{flag="on"\} 1$/m)
  t.match(body, /^feature_flag_enabled\{flag="off"\} 0$/m)
  t.match(body, /^feature_flag_enabled\{flag="rollout"\} 0.25$/m)
  await app.flags.disable('on')
  t.match((await app.inject('/metrics')).body, /^feature_flag_enabled\{flag="on"\} 0$/m)
})

test('bad options fail registration with a TypeError naming the option', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [{ defaults: { 'Bad Name': true } }, /^fastify-resilience-flags: "defaults" must be a flag name.* \(got "Bad Name"\)$/],
    [{ defaults: { player_lookup: 'on' } }, /"defaults.player_lookup" must be true, false or \{ percentage: 0-100 \} \(got "on"\)/],
    [{ defaults: [] }, /"defaults" must be an object of flag values \(got an array\)/],
    [{ defaultEnabled: 1 }, /"defaultEnabled" must be a boolean \(got 1\)/],
    [{ admin: { token: 'short' } }, /"admin.token" must be a token of at least 16 characters without spaces \(got "short"\)/],
    [{ admin: { token: TOKEN, prefix: 'admin' } }, /"admin.prefix" must be a path prefix such as "\/admin" \(got "admin"\)/],
    [{ admin: { token: TOKEN, path: '/x' } }, /unknown option "admin.path"/],
    [{ redis: true }, /"redis.client" must be an ioredis client, or @fastify\/redis registered before the flags plugin \(got undefined\)/],
    [{ redis: { client: {} } }, /"redis.client" must be an ioredis client \(got an object\)/],
    [{ redis: { client: { duplicate: () => {} }, commandTimeoutMs: 0 } }, /"redis.commandTimeoutMs" must be a number >= 1 \(got 0\)/],
    [{ redis: { client: { duplicate: () => {} }, key: '' } }, /"redis.key" must be a non-empty Redis key \(got ""\)/],
    [{ redis: { client: { duplicate: () => {} }, channel: 'a b' } }, /"redis.channel" must be a non-empty channel name \(got "a b"\)/],
    [{ store: 'redis' }, /unknown option "store"/]
  ]
  for (const [options, message] of cases) {
    const app = Fastify()
    t.teardown(() => app.close())
    await t.rejects(async () => { await app.register(flags, options as FlagsPluginOptions) }, { name: 'TypeError', message }, JSON.stringify(options))
  }
})

test('registering the flags plugin twice in one scope fails loudly', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(flags)
  await t.rejects(async () => { await app.register(flags) }, /fastify-resilience-flags has already been registered/)
})
