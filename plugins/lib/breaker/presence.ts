import type { FastifyBaseLogger } from 'fastify'
import { LuaScript } from '../redis/lua-script.js'
import type { RedisLink } from '../redis/redis-link.js'
import { Deadlines } from '../time/deadlines.js'
import { within } from '../time/timeout.js'

/** How often an instance says it is alive. */
export const HEARTBEAT_MS = 1000
/** An instance not heard of for this long is taken to be gone. */
export const PRESENCE_TTL_MS = 5000
/** Longest wait for Redis on a heartbeat or a goodbye. */
const PRESENCE_TIMEOUT_MS = 1000

/** What the channel carries when an instance joins or leaves: every instance counts again. */
export const PRESENCE_MESSAGE = JSON.stringify({ kind: 'presence' })

/**
 * Adds (or refreshes) instance ARGV[1] in the sorted set KEYS[1] of live
 * instances with its expiry on Redis's clock (ARGV[2] ms from now), drops the
 * expired ones, and answers how many are alive. A new member is announced on
 * channel ARGV[3] so that the others count again at once.
 */
const ANNOUNCE = new LuaScript(`
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local added = redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
-- The set goes once no instance is left to refresh it.
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if added == 1 then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return redis.call('ZCARD', KEYS[1])
`)

/** Removes instance ARGV[1] from KEYS[1] and tells the others on channel ARGV[2]. */
const LEAVE = new LuaScript(`
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return 0
`)

/**
 * This instance's entry in the fleet's list of live instances, refreshed
 * every second on an unref'd timer (never on a call's path), and the fleet's
 * size as last counted. An entry expires 5 s after its last refresh, so an
 * instance that died or lost Redis drops out of the count; a Redis that lost
 * its data learns the fleet again within a second, and at once from an
 * instance whose commands connection comes back.
 */
export class Presence {
  private readonly link: RedisLink
  private readonly key: string
  private readonly channel: string
  private readonly instance: string
  private readonly log: FastifyBaseLogger
  private readonly waits = new Deadlines(PRESENCE_TIMEOUT_MS)
  private live: number | undefined
  private announcing: Promise<void> | undefined
  /** Asked to count again while a count was on its way (it may have missed a join). */
  private countAgain = false
  private left = false
  private readonly timer: NodeJS.Timeout
  private readonly counted: Promise<void>
  private markCounted!: () => void

  constructor (link: RedisLink, key: string, channel: string, instance: string, log: FastifyBaseLogger) {
    this.link = link
    this.key = key
    this.channel = channel
    this.instance = instance
    this.log = log
    this.counted = new Promise<void>((resolve) => { this.markCounted = resolve })
    this.timer = setInterval(() => this.announce(), HEARTBEAT_MS)
    this.timer.unref()
  }

  /** Live instances of the fleet as last counted, this one included; undefined until first counted. */
  get instances (): number | undefined {
    return this.live
  }

  /**
   * The quorum to apply: `configured`, or every live instance when fewer are
   * alive. Before the fleet was first counted, `configured`.
   */
  quorum (configured: number): number {
    return Math.min(configured, this.live ?? configured)
  }

  /** Settles once the fleet was first counted. */
  get firstCount (): Promise<void> {
    return this.counted
  }

  /** Says this instance is alive and counts the fleet (one at a time; a failure keeps the last count). */
  announce (): void {
    if (this.announcing !== undefined) {
      this.countAgain = true
      return
    }
    if (this.left || !this.link.commandsReady) return
    const asked = this.link.run(ANNOUNCE, [this.key], [this.instance, PRESENCE_TTL_MS, this.channel, PRESENCE_MESSAGE])
    this.announcing = within(asked, this.waits).then((count) => {
      this.live = Number(count)
      this.markCounted()
    }, (error: unknown) => {
      this.log.debug({ err: error }, 'circuit breakers: could not refresh this instance\'s presence in Redis')
    }).finally(() => {
      this.announcing = undefined
      if (this.countAgain) {
        this.countAgain = false
        this.announce()
      }
    })
  }

  /** Stops the heartbeat and leaves the fleet's list at once (bounded; the entry expires anyway). */
  async leave (): Promise<void> {
    this.left = true
    clearInterval(this.timer)
    this.markCounted()
    if (!this.link.commandsReady) return
    await within(this.link.run(LEAVE, [this.key], [this.instance, this.channel, PRESENCE_MESSAGE]), this.waits).catch(() => {})
  }
}
