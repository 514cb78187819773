import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { test } from 'tap'
import { RedisLink } from '../../../plugins/lib/redis/redis-link.js'
import type { RedisLinkHandlers } from '../../../plugins/lib/redis/redis-link.js'
import { startCommandProxy } from '../../fixtures/command-proxy.js'
import { freeze, ownRedis } from '../../fixtures/redis-server.js'
import { testRedisUrl, uniqueName } from '../../fixtures/services.js'
import { waitFor } from '../../fixtures/wait.js'
import type { Teardown } from '../../fixtures/app.js'

/** A link on a client of `port`, with handlers that count what they hear, and the connections it made. */
function link (t: Teardown, port: number): { link: RedisLink, heard: Record<keyof RedisLinkHandlers, number>, connections: Redis[] } {
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true })
  client.on('error', () => {})
  const connections: Redis[] = []
  const duplicate = client.duplicate.bind(client)
  client.duplicate = (override) => {
    const connection = duplicate(override)
    connections.push(connection)
    return connection
  }
  const heard = { subscribed: 0, subscriptionLost: 0, commandsReady: 0, message: 0 }
  const made = new RedisLink(client, uniqueName('channel'), {
    subscribed: () => { heard.subscribed++ },
    subscriptionLost: () => { heard.subscriptionLost++ },
    commandsReady: () => { heard.commandsReady++ },
    message: () => { heard.message++ }
  }, Fastify().log, 'test')
  t.teardown(() => made.close())
  return { link: made, heard, connections }
}

test('a frozen Redis keeps its connections open, yet the subscription counts as lost within 3 s (its echoes go unheard), and is made again once Redis thaws', async (t) => {
  const server = await ownRedis(t)
  const { link: made, heard } = link(t, server.port)
  await waitFor('subscribed', () => made.subscribed && made.commandsReady)
  await freeze(server)
  const frozenAt = performance.now()
  await waitFor('the subscription to count as lost', () => !made.subscribed, 10_000)
  const tookMs = performance.now() - frozenAt
  t.ok(tookMs >= 900, `not before an echo could have come back (${Math.round(tookMs)} ms)`)
  t.equal(heard.subscriptionLost, 1, 'said once')
  server.process.resume()
  await waitFor('subscribed again', () => made.subscribed)
  t.equal(heard.subscribed, 2, 'the store is told, so it reads what it missed')
})

test('echoes that come back keep the subscription while Redis answers, and the store hears none of them', async (t) => {
  const { link: made, heard } = link(t, Number(new URL(testRedisUrl()).port))
  await waitFor('subscribed', () => made.subscribed)
  const observer = new Redis(testRedisUrl())
  t.teardown(() => observer.disconnect())
  // The echo channel has one subscriber (the link), and echoes are published on it: wait for four of them.
  const echoes = async (): Promise<number> => Number(/cmdstat_publish:calls=(\d+)/.exec(await observer.info('commandstats'))?.[1] ?? 0)
  const before = await echoes()
  await waitFor('four echo periods', async () => await echoes() - before >= 4, 15_000)
  t.equal(heard.subscriptionLost, 0, 'never counted as lost')
  t.ok(made.subscribed)
  t.equal(heard.message, 0, 'the echoes are the link\'s own')
})

test('a subscription still on its way when the link closes fails without telling the store', async (t) => {
  const server = await ownRedis(t)
  const proxy = await startCommandProxy(server.port)
  t.teardown(() => proxy.close())
  const held = proxy.onceCommand('subscribe', () => proxy.holdReplies())
  const { link: made, heard, connections } = link(t, proxy.port)
  await held
  made.close()
  // The closing connections refuse what is pending (the SUBSCRIBE) as they end.
  await waitFor('the link\'s connections to end', () => connections.length === 2 && connections.every((connection) => connection.status === 'end'))
  await new Promise((resolve) => setImmediate(resolve))
  t.same({ subscribed: heard.subscribed, subscriptionLost: heard.subscriptionLost }, { subscribed: 0, subscriptionLost: 0 })
})
