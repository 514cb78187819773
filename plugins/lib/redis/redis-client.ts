/**
 * The part of an ioredis client the suite uses, typed by its shape so that the
 * published types compile without ioredis installed (it is an optional peer).
 * An ioredis `Redis` (what @fastify/redis decorates `app.redis` with) and an
 * ioredis `Cluster` both fit it.
 */
export interface RedisClient {
  /** `'ready'` while connected. */
  readonly status: string
  /** True on an ioredis `Cluster`, whose `duplicate()` takes other arguments. */
  readonly isCluster?: boolean
  /**
   * A new connection with the same settings: `Redis.duplicate(options)`, or
   * `Cluster.duplicate(startupNodes, options)` (see `unqueuedConnection`).
   */
  duplicate: (...args: any[]) => RedisClient
  on: (event: string, listener: (...args: any[]) => void) => unknown
  once: (event: string, listener: (...args: any[]) => void) => unknown
  off: (event: string, listener: (...args: any[]) => void) => unknown
  subscribe: (channel: string) => Promise<unknown>
  publish: (channel: string, message: string) => Promise<unknown>
  hgetall: (key: string) => Promise<Record<string, string>>
  time: () => Promise<unknown[]>
  eval: (script: string, numberOfKeys: number, ...keysAndArgs: Array<string | number>) => Promise<unknown>
  evalsha: (sha: string, numberOfKeys: number, ...keysAndArgs: Array<string | number>) => Promise<unknown>
  disconnect: () => void
}

/** An ioredis `Cluster`, as the suite uses it. */
export interface RedisClusterClient extends RedisClient {
  /** Its connections to its masters (plain `Redis` clients), once it knows them. */
  nodes: (role: 'master') => RedisClient[]
}

/** Whether `client` is an ioredis `Cluster`. */
export function isClusterClient (client: RedisClient): client is RedisClusterClient {
  return client.isCluster === true
}

/** ioredis options of a connection that never queues a command nor sends one twice. */
const UNQUEUED = { enableOfflineQueue: false, autoResendUnfulfilledCommands: false }

/**
 * A new connection with `client`'s settings on which a command is sent now
 * or refused now, never queued while disconnected nor sent again on a new
 * connection, whatever the options of `client`. On a Cluster, both are
 * Cluster options: its own offline queue, and its retry of commands whose
 * node connection dropped (`retryDelayOnFailover: 0` turns it off; the
 * nodes' connections always queue, and resend nothing the Cluster does not).
 */
export function unqueuedConnection (client: RedisClient): RedisClient {
  if (isClusterClient(client)) return client.duplicate([], { enableOfflineQueue: false, retryDelayOnFailover: 0, lazyConnect: false })
  return client.duplicate({ ...UNQUEUED, lazyConnect: false })
}
