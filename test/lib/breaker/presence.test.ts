import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { test } from 'tap'
import { Presence } from '../../../plugins/lib/breaker/presence.js'
import { RedisLink } from '../../../plugins/lib/redis/redis-link.js'
import { testRedisUrl, uniqueName } from '../../fixtures/services.js'
import { waitFor } from '../../fixtures/wait.js'
import type { Teardown } from '../../fixtures/app.js'

function presence (t: Teardown, url: string, key: string): Presence {
  const client = new Redis(url, { lazyConnect: true })
  client.on('error', () => {})
  const channel = uniqueName('channel')
  const log = Fastify().log
  const link = new RedisLink(client, channel, {
    subscribed: () => {},
    subscriptionLost: () => {},
    commandsReady: () => made.announce(),
    message: () => made.announce()
  }, log, 'test')
  const made: Presence = new Presence(link, key, channel, uniqueName('instance'), log)
  t.teardown(async () => {
    await made.leave()
    link.close()
  })
  return made
}

test('the quorum applied is the configured one until the fleet is counted, then at most the live instances', async (t) => {
  const key = uniqueName('instances')
  const unreachable = presence(t, 'redis://127.0.0.1:1', key)
  t.equal(unreachable.instances, undefined, 'not counted: Redis is unreachable')
  t.equal(unreachable.quorum(2), 2, 'the configured quorum applies')

  const first = presence(t, testRedisUrl(), key)
  await waitFor('counted', () => first.instances === 1)
  t.equal(first.quorum(2), 1, 'a lone instance is a quorum')
  const second = presence(t, testRedisUrl(), key)
  await waitFor('both count two', () => first.instances === 2 && second.instances === 2)
  t.equal(first.quorum(2), 2)
  t.equal(first.quorum(3), 2, 'never more than the live instances')
  await second.leave()
  await waitFor('the first to count one again', () => first.instances === 1)
})
