/**
 * The part of an ioredis client the suite uses, typed by its shape so that the
 * published types compile without ioredis installed (it is an optional peer).
 * An ioredis `Redis` (what @fastify/redis decorates `app.redis` with) fits it.
 */
export interface RedisClient {
  /** `'ready'` while connected. */
  readonly status: string
  /** A new connection with the same settings, `options` applied over them. */
  duplicate: (options?: Record<string, unknown>) => RedisClient
  on: (event: string, listener: (...args: any[]) => void) => unknown
  once: (event: string, listener: (...args: any[]) => void) => unknown
  off: (event: string, listener: (...args: any[]) => void) => unknown
  subscribe: (channel: string) => Promise<unknown>
  hgetall: (key: string) => Promise<Record<string, string>>
  time: () => Promise<unknown[]>
  eval: (script: string, numberOfKeys: number, ...keysAndArgs: Array<string | number>) => Promise<unknown>
  disconnect: () => void
}
