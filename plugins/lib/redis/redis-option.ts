import type { RedisClient } from './redis-client.js'
import type { OptionReader } from '../plugin/options.js'

/**
 * The client of a plugin's Redis option (`option` names it, e.g.
 * `redis.client`): the one given, else the app's `app.redis` from
 * @fastify/redis; a TypeError naming the option when there is neither, or
 * when what was given is not an ioredis client.
 */
export function redisClientOption (read: OptionReader, option: string, given: unknown, appRedis: () => RedisClient | undefined, plugin: string): RedisClient {
  const client = given ?? appRedis()
  if (client === undefined) throw read.fail(option, `an ioredis client, or @fastify/redis registered before the ${plugin} plugin`, client)
  if (typeof (client as { duplicate?: unknown }).duplicate !== 'function') throw read.fail(option, 'an ioredis client', client)
  return client as RedisClient
}

/** The app's `app.redis` (@fastify/redis), if registered. */
export function appRedisOf (app: { hasDecorator: (name: string) => boolean }): () => RedisClient | undefined {
  return () => app.hasDecorator('redis') ? (app as unknown as { redis: RedisClient }).redis : undefined
}
