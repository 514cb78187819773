import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { LuaScript } from './lua-script.js'
import type { RedisClient } from './redis-client.js'
import { connectionLike } from './redis-client.js'

/** How often a link checks that its subscription still hears. */
const ECHO_INTERVAL_MS = 1000
/** Echoes not heard back after which the subscription counts as lost (2 to 3 seconds). */
const ECHOES_MISSED = 2

const ignore = (): void => {}

/** What a store hears from its link to Redis. */
export interface RedisLinkHandlers {
  /** Subscribed (again) to the channel: changes made from now on are heard; read what may have been missed. */
  subscribed: () => void
  /** The subscription is lost, or could not be made: changes may go unheard until `subscribed` comes again. */
  subscriptionLost: (error: unknown) => void
  /** The commands connection is (again) ready. */
  commandsReady: () => void
  /** A message on the channel. */
  message: (text: string) => void
}

/**
 * A store's two connections to Redis, both made from the app's client (an
 * ioredis `Redis` or `Cluster`) and closed with the store: one subscribed to
 * the store's channel, subscribing again on every reconnection, and one for
 * commands, with no offline queue and no resending, so that a command goes
 * now or fails now (see `connectionLike`). An echo every second checks that
 * the subscription still hears (see `checkEcho`). ioredis reports every failed
 * reconnection as an error: those are logged at debug level only, since
 * the store says once when Redis is lost and when it is back.
 */
export class RedisLink {
  /** The connection for commands: never queued, never resent. */
  readonly commands: RedisClient
  private readonly subscriber: RedisClient
  private readonly channel: string
  private readonly handlers: RedisLinkHandlers
  private readonly log: FastifyBaseLogger
  /** What the store is called in logs, e.g. `circuit breakers`. */
  private readonly part: string
  private subscribedNow = false
  private closed = false
  /** A channel of this link alone, where it checks that it still hears what is published. */
  private readonly echoChannel: string
  private readonly echoTimer: NodeJS.Timeout
  private echoesSent = 0
  private echoesHeard = 0

  private readonly onSubscriberReady = (): void => {
    Promise.all([this.channel, this.echoChannel].map(async (channel) => await this.subscriber.subscribe(channel))).then(() => {
      this.subscribedNow = true
      this.echoesHeard = this.echoesSent
      this.handlers.subscribed()
    }, (error: unknown) => this.lost(error))
  }

  private readonly onSubscriberClosed = (): void => this.lost(new Error('the subscriber connection closed'))
  /**
   * Every second, an echo: a message to ourselves on a channel of our own.
   * A frozen Redis keeps its connections open and says nothing, and on a
   * Cluster, when the node holding the subscription dies, ioredis subscribes
   * again on another node by itself and says nothing either: what was
   * published meanwhile is lost. Two echoes not heard back say so: the
   * subscription counts as lost (the store stops following) and is made
   * again (the store then reads what it missed). An echo that could not be
   * sent (the commands connection is down) is not heard either: nothing is
   * followed then anyway.
   */
  private readonly checkEcho = (): void => {
    if (!this.subscribedNow) return
    if (this.echoesSent - this.echoesHeard >= ECHOES_MISSED) {
      this.lost(new Error('the subscription stopped hearing what is published'))
      this.onSubscriberReady()
      return
    }
    this.echoesSent++
    this.commands.publish(this.echoChannel, String(this.echoesSent)).catch(ignore)
  }

  private readonly onMessage = (channel: string, text: string): void => {
    if (channel === this.echoChannel) this.echoesHeard = Math.max(this.echoesHeard, Number(text))
    else this.handlers.message(text)
  }

  private readonly onCommandsReady = (): void => this.handlers.commandsReady()
  private readonly onConnectionError = (error: Error): void => {
    this.log.debug({ err: error }, `${this.part}: Redis connection error`)
  }

  constructor (client: RedisClient, channel: string, handlers: RedisLinkHandlers, log: FastifyBaseLogger, part: string) {
    this.channel = channel
    this.handlers = handlers
    this.log = log
    this.part = part
    this.echoChannel = `${channel}:echo:${randomUUID()}`
    this.echoTimer = setInterval(this.checkEcho, ECHO_INTERVAL_MS)
    this.echoTimer.unref()
    this.subscriber = connectionLike(client, false)
    this.subscriber.on('error', this.onConnectionError)
    this.subscriber.on('close', this.onSubscriberClosed)
    this.subscriber.on('message', this.onMessage)
    this.subscriber.on('ready', this.onSubscriberReady)
    this.commands = connectionLike(client, true)
    this.commands.on('error', this.onConnectionError)
    this.commands.on('ready', this.onCommandsReady)
  }

  /** Subscribed to the channel now. */
  get subscribed (): boolean {
    return this.subscribedNow
  }

  /** The commands connection is up. */
  get commandsReady (): boolean {
    return this.commands.status === 'ready'
  }

  /** Runs `script` on the commands connection. */
  async run (script: LuaScript, keys: string[], args: Array<string | number>): Promise<unknown> {
    return await script.run(this.commands, keys, args)
  }

  /** Removes our listeners and closes both connections. */
  close (): void {
    this.closed = true
    clearInterval(this.echoTimer)
    this.commands.off('ready', this.onCommandsReady)
    this.commands.disconnect()
    this.subscriber.off('ready', this.onSubscriberReady)
    this.subscriber.off('message', this.onMessage)
    this.subscriber.off('close', this.onSubscriberClosed)
    this.subscriber.disconnect()
  }

  /** The subscription is lost; not once closed (a subscription on its way then fails for that reason). */
  private lost (error: unknown): void {
    if (this.closed) return
    this.subscribedNow = false
    this.handlers.subscriptionLost(error)
  }
}
