import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import { FlagStoreUnavailableError } from '../errors.js'
import { callWithTimeout } from './timeout.js'
import { neverAborted } from './abort.js'
import type { FeatureFlags, FlagStore, FlagValue } from './feature-flags.js'
import { FLAG_NAME } from './feature-flags.js'

export interface RedisFlagStoreSettings {
  client: Redis
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
 * Flags shared by every instance through Redis: values live in a hash, each
 * change is published on a channel, and every instance listens on its own
 * subscriber connection (a `duplicate()` of the client), so changes arrive as
 * events, with no polling. Whenever either connection becomes ready again the
 * hash is read anew, which picks up changes made while this instance was cut
 * off. Flags missing from the hash (a Redis restarted without persistence)
 * keep their last known values.
 */
export class RedisFlagStore implements FlagStore {
  private readonly settings: RedisFlagStoreSettings
  private readonly flags: FeatureFlags
  private readonly log: FastifyBaseLogger
  private readonly subscriber: Redis
  private unavailable = false
  private readonly onReady = (): void => { this.reload().catch(() => {}) }
  /** The subscriber connection dropped (or never came up): say so once per outage. */
  private readonly onSubscriberLost = (error?: unknown): void => {
    if (this.unavailable) return
    this.unavailable = true
    this.log.warn({ err: error }, 'feature flags: Redis is unreachable; keeping the last known values')
  }

  /** ioredis reports every failed reconnection as an error; the outage is already logged. */
  private readonly onSubscriberError = (error: Error): void => {
    this.log.debug({ err: error }, 'feature flags: Redis subscriber error')
  }

  /** The subscriber listens to our channel only. */
  private readonly onMessage = (channel: string, message: string): void => {
    const parsed = parseJson(message) as { name?: unknown, value?: unknown } | undefined
    const value = toFlagValue(parsed?.value)
    if (typeof parsed?.name !== 'string' || !FLAG_NAME.test(parsed.name) || value === undefined) {
      this.log.warn({ channel }, 'feature flags: ignored a malformed change message')
      return
    }
    this.flags.apply(parsed.name, value)
  }

  constructor (settings: RedisFlagStoreSettings, flags: FeatureFlags, log: FastifyBaseLogger) {
    this.settings = settings
    this.flags = flags
    this.log = log
    this.subscriber = settings.client.duplicate()
    this.subscriber.on('error', this.onSubscriberError)
    this.subscriber.on('close', this.onSubscriberLost)
    this.subscriber.on('message', this.onMessage)
    this.subscriber.on('ready', this.onReady)
    settings.client.on('ready', this.onReady)
  }

  /** Subscribes and loads every value; never fails start-up (Redis may come later). */
  async start (): Promise<void> {
    try {
      await callWithTimeout(async () => await this.subscriber.subscribe(this.settings.channel), neverAborted, this.settings.commandTimeoutMs)
    } catch (error) {
      this.onSubscriberLost(error)
    }
    await this.reload()
  }

  async set (name: string, value: FlagValue): Promise<void> {
    const { client, key, channel, commandTimeoutMs } = this.settings
    if (client.status !== 'ready') throw new FlagStoreUnavailableError(name, `Redis connection is ${client.status}`)
    const text = JSON.stringify(value)
    try {
      await callWithTimeout(async () => await client.multi().hset(key, name, text).publish(channel, JSON.stringify({ name, value })).exec(), neverAborted, commandTimeoutMs)
    } catch (error) {
      throw new FlagStoreUnavailableError(name, (error as Error).message, { cause: error })
    }
  }

  /** Reads the whole hash and applies what differs. */
  async reload (): Promise<void> {
    let stored: Record<string, string>
    try {
      stored = await callWithTimeout(async () => await this.settings.client.hgetall(this.settings.key), neverAborted, this.settings.commandTimeoutMs)
    } catch (error) {
      this.log.warn({ err: error }, 'feature flags: could not load the values from Redis; keeping the last known values')
      return
    }
    if (this.unavailable && this.subscriber.status === 'ready') {
      this.unavailable = false
      this.log.info('feature flags: Redis is reachable again')
    }
    for (const [name, text] of Object.entries(stored)) {
      const value = toFlagValue(parseJson(text))
      if (FLAG_NAME.test(name) && value !== undefined) this.flags.apply(name, value)
    }
  }

  /** Removes our listeners from the app's client and closes the subscriber connection. */
  close (): void {
    this.settings.client.off('ready', this.onReady)
    this.subscriber.off('ready', this.onReady)
    this.subscriber.off('message', this.onMessage)
    this.subscriber.off('close', this.onSubscriberLost)
    this.subscriber.disconnect()
  }
}
