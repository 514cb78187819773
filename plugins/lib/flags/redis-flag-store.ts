import type { FastifyBaseLogger } from 'fastify'
import type { RedisClient } from '../redis/redis-client.js'
import { LuaScript } from '../redis/lua-script.js'
import { RedisLink } from '../redis/redis-link.js'
import { FlagStoreUnavailableError, TimeoutError, isTimeoutError } from '../../errors.js'
import { Deadlines } from '../time/deadlines.js'
import { callWithTimeout, within } from '../time/timeout.js'
import { neverAborted } from '../time/abort.js'
import type { FeatureFlags, FlagStore, FlagValue } from './feature-flags.js'
import { FLAG_NAME } from './feature-flags.js'

export interface RedisFlagStoreSettings {
  client: RedisClient
  /** Hash holding every flag's value (JSON). */
  key: string
  /** Channel every change is published on. */
  channel: string
  /** Longest wait for Redis when saving or loading. */
  commandTimeoutMs: number
}

/** A value as we store it, or undefined if it is not one. */
function toFlagValue (value: unknown): FlagValue | undefined {
  if (typeof value === 'boolean') return value
  const percentage = (value as { percentage?: unknown } | null)?.percentage
  if (typeof percentage === 'number' && percentage >= 0 && percentage <= 100) return { percentage }
  return undefined
}

function parseJson (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/**
 * The fenced write. KEYS[1] the hash; ARGV: the fence (microseconds since the
 * epoch on Redis's clock), the flag, its value (JSON), the channel, the change
 * message. Redis applies the change, and announces it, only while its own
 * clock is before the fence: a write that reaches it late (left in the socket
 * buffer of a frozen server, delayed on the way) is refused by Redis itself.
 * Returns 1 if applied, 0 if refused.
 */
const FENCED_SET = new LuaScript(`
local now = redis.call('TIME')
if tonumber(now[1]) * 1000000 + tonumber(now[2]) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
`)

/**
 * Why a change failed, in words that may reach an API response: never the
 * driver's message (it can name hosts and ports), which stays the `cause`.
 */
function failureReason (error: unknown, timeoutMs: number): string {
  if (isTimeoutError(error)) return `Redis did not confirm the change within ${timeoutMs} ms`
  if ((error as Error).name === 'ReplyError') return 'Redis refused the change'
  return 'Redis is unreachable'
}

/**
 * Flags shared by every instance through Redis: values live in a hash, each
 * change is published on a channel, and every instance listens on its own
 * subscriber connection (see `RedisLink`), so changes arrive as events, with
 * no polling. Whenever either connection becomes ready again the hash is read
 * anew, which picks up changes made while this instance was cut off. Flags
 * missing from the hash (a Redis restarted without persistence) keep their
 * last known values.
 *
 * Changes go through the link's commands connection, which has ioredis's
 * offline queue and resending off, so a change is sent once, now, or refused
 * now: never queued for later, nor sent again on a new connection, whatever
 * the options of the app's client. What is sent carries a fence on Redis's
 * own clock that passes no later than the moment `set()` gives up (see
 * `fencedWrite`), so a rejected change is not applied afterwards. One case
 * remains: Redis applies the change just before the fence and its reply
 * arrives too late (or never). The change then reaches every instance, this
 * one too, like any other change: through the channel, or through the reload
 * when a connection comes back; a late reply is logged.
 */
export class RedisFlagStore implements FlagStore {
  private readonly settings: RedisFlagStoreSettings
  private readonly flags: FeatureFlags
  private readonly log: FastifyBaseLogger
  private readonly link: RedisLink
  /** Waits for Redis, `commandTimeoutMs` each. */
  private readonly waits: Deadlines
  private readonly writerReady: Promise<unknown>
  private unavailable = false
  /** Settles once the subscriber has subscribed for the first time. */
  private readonly subscribed: Promise<unknown>
  private markSubscribed!: () => void
  private markWriterReady!: () => void

  /** A connection came (back): read the hash, on the commands connection once it is up (its own 'ready' comes later otherwise). */
  private readonly onReady = (): void => {
    if (this.link.commandsReady) this.reload().catch(() => {})
  }

  /** The subscriber connection dropped (or never came up): say so once per outage. */
  private readonly onSubscriptionLost = (error?: unknown): void => {
    if (this.unavailable) return
    this.unavailable = true
    this.log.warn({ err: error }, 'feature flags: Redis is unreachable; keeping the last known values')
  }

  /** The subscriber listens to our channel only. */
  private readonly onMessage = (message: string): void => {
    const parsed = parseJson(message) as { name?: unknown, value?: unknown } | undefined
    const value = toFlagValue(parsed?.value)
    if (typeof parsed?.name !== 'string' || !FLAG_NAME.test(parsed.name) || value === undefined) {
      this.log.warn({ channel: this.settings.channel }, 'feature flags: ignored a malformed change message')
      return
    }
    this.flags.apply(parsed.name, value)
  }

  constructor (settings: RedisFlagStoreSettings, flags: FeatureFlags, log: FastifyBaseLogger) {
    this.settings = settings
    this.flags = flags
    this.log = log
    this.waits = new Deadlines(settings.commandTimeoutMs)
    this.subscribed = new Promise<void>((resolve) => { this.markSubscribed = resolve })
    this.writerReady = new Promise<void>((resolve) => { this.markWriterReady = resolve })
    this.link = new RedisLink(settings.client, settings.channel, {
      subscribed: () => {
        this.markSubscribed()
        this.onReady()
      },
      subscriptionLost: this.onSubscriptionLost,
      commandsReady: () => {
        this.markWriterReady()
        this.onReady()
      },
      message: this.onMessage
    }, log, 'feature flags')
  }

  /** Subscribes, connects the writer and loads every value; never fails start-up (Redis may come later). */
  async start (): Promise<void> {
    await Promise.all([
      within(this.subscribed, this.waits).catch(this.onSubscriptionLost),
      // Without an offline queue, a change made before the writer is connected would be refused.
      within(this.writerReady, this.waits).catch(() => {})
    ])
    await this.reload()
  }

  async set (name: string, value: FlagValue): Promise<void> {
    try {
      await this.fencedWrite(name, value)
    } catch (error) {
      throw new FlagStoreUnavailableError(name, failureReason(error, this.settings.commandTimeoutMs), { cause: error })
    }
  }

  /**
   * Asks Redis for its time, then sends the fenced write, both within one
   * wait of `commandTimeoutMs`, which gives up no earlier than `giveUpAt`.
   * Redis read its clock at some moment before its reply arrived; taking that
   * moment to be now can only move the fence earlier, so the fence passes on
   * Redis's clock no later than `giveUpAt` passes on ours, whatever the offset
   * between the two clocks (and both count time at the same rate over a few
   * seconds). A TIME answered after we gave up sends nothing.
   */
  private async fencedWrite (name: string, value: FlagValue): Promise<void> {
    const { key, channel, commandTimeoutMs } = this.settings
    const clock = this.waits.clock
    const giveUpAt = clock.now() + commandTimeoutMs
    let written: Promise<unknown> | undefined
    try {
      const applied = await callWithTimeout(async ({ signal }) => {
        const [seconds, microseconds] = await this.link.commands.time()
        signal.throwIfAborted()
        const fenceUs = Number(seconds) * 1_000_000 + Number(microseconds) + Math.floor((giveUpAt - clock.now()) * 1000)
        written = this.link.run(FENCED_SET, [key], [fenceUs, name, JSON.stringify(value), channel, JSON.stringify({ name, value })])
        return await written
      }, neverAborted, this.waits)
      // Refused: Redis's clock had passed the fence (the TIME reply was slow).
      if (applied !== 1) throw new TimeoutError(commandTimeoutMs)
    } catch (error) {
      if (written !== undefined) this.reportLateReply(name, value, written)
      throw error
    }
  }

  /** A write given up on may still have been applied before its fence: say so when its reply comes. */
  private reportLateReply (name: string, value: FlagValue, written: Promise<unknown>): void {
    Promise.allSettled([written]).then(([reply]) => {
      if (reply.status === 'fulfilled' && reply.value === 1) {
        this.log.warn({ flag: name, value }, 'feature flags: a change reported as failed reached Redis before its deadline and was applied; every instance follows it')
      }
    })
  }

  /** Reads the whole hash and applies what differs. */
  async reload (): Promise<void> {
    let stored: Record<string, string>
    try {
      stored = await within(this.link.commands.hgetall(this.settings.key), this.waits)
    } catch (error) {
      this.log.warn({ err: error }, 'feature flags: could not load the values from Redis; keeping the last known values')
      return
    }
    if (this.unavailable && this.link.subscribed) {
      this.unavailable = false
      this.log.info('feature flags: Redis is reachable again')
    }
    for (const [name, text] of Object.entries(stored)) {
      const value = toFlagValue(parseJson(text))
      if (FLAG_NAME.test(name) && value !== undefined) this.flags.apply(name, value)
    }
  }

  /** Closes our connections. */
  close (): void {
    this.link.close()
  }
}
