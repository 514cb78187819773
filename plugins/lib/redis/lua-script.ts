import { createHash } from 'node:crypto'
import type { RedisClient } from './redis-client.js'

/** Redis does not hold the script (a new connection's node, or a restart): send it whole once. */
function isNoScript (error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT')
}

/**
 * A Lua script called by its SHA1 (`EVALSHA`), sent whole (`EVAL`, which
 * also makes Redis keep it) only when a Redis node does not hold it yet, as
 * ioredis's `defineCommand` does: a call costs one round trip and a few
 * bytes, not the script's text.
 */
export class LuaScript {
  readonly source: string
  readonly sha: string

  constructor (source: string) {
    this.source = source
    this.sha = createHash('sha1').update(source).digest('hex')
  }

  /** Runs the script on `keys` (all of one hash slot on a Cluster) with `args`. */
  async run (client: RedisClient, keys: string[], args: Array<string | number>): Promise<unknown> {
    try {
      return await client.evalsha(this.sha, keys.length, ...keys, ...args)
    } catch (error) {
      if (!isNoScript(error)) throw error
      return await client.eval(this.source, keys.length, ...keys, ...args)
    }
  }
}
