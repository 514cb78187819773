import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { LuaScript } from './lua-script.js'
import type { RedisClient } from './redis-client.js'
import { isClusterClient, unqueuedConnection } from './redis-client.js'

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
 * now or fails now (see `unqueuedConnection`). An echo every second checks that
 * the subscription still hears (see `checkEcho`). ioredis reports every failed
 * reconnection as an error: those are logged at debug level only, since
 * the store says once when Redis is lost and when it is back.
 */
export class RedisLink {
  /** The connection for commands: never queued, never resent. */
  readonly commands: RedisClient
  /** The subscribed connection; on a Cluster, to one node, made once the Cluster knows its nodes. */
  private subscriber: RedisClient | undefined
  private readonly client: RedisClient
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
    const subscriber = this.subscriber as RedisClient
    Promise.all([this.channel, this.echoChannel].map(async (channel) => await subscriber.subscribe(channel))).then(() => {
      this.subscribedNow = true
      this.echoesHeard = this.echoesSent
      this.handlers.subscribed()
    }, (error: unknown) => this.lost(error))
  }

  private readonly onSubscriberClosed = (): void => this.lost(new Error('the subscriber connection closed'))
  /**
   * Every second, an echo: a message to ourselves on a channel of our own.
   * A frozen Redis keeps its connections open and says nothing. Two echoes
   * not heard back (2 to 3 s) say that the subscription does not hear: it
   * counts as lost (the store stops following), and a new subscriber
   * connection replaces the old one; once it is subscribed, the store reads
   * what it missed. On a Cluster the subscriber is a connection to one node,
   * picked at random, so that the node's loss is seen at once (ioredis's own
   * Cluster subscriber moves to another node silently, and what is
   * published meanwhile is lost), and the replacement picks a node again:
   * away from a dead or frozen one, sooner or later. An echo that could not
   * be sent (the commands connection is down) is not heard either.
   */
  private readonly checkEcho = (): void => {
    if (this.echoesSent - this.echoesHeard >= ECHOES_MISSED) {
      if (this.subscribedNow) this.lost(new Error('the subscription stopped hearing what is published'))
      this.echoesHeard = this.echoesSent
      this.dropSubscriber()
      this.openSubscriber()
      return
    }
    this.echoesSent++
    this.commands.publish(this.echoChannel, String(this.echoesSent)).catch(ignore)
  }

  private readonly onMessage = (channel: string, text: string): void => {
    if (channel === this.echoChannel) this.echoesHeard = Math.max(this.echoesHeard, Number(text))
    else this.handlers.message(text)
  }

  private readonly onCommandsReady = (): void => {
    // A Cluster's nodes are known once it is ready.
    if (this.subscriber === undefined) this.openSubscriber()
    this.handlers.commandsReady()
  }

  private readonly onConnectionError = (error: Error): void => {
    this.log.debug({ err: error }, `${this.part}: Redis connection error`)
  }

  constructor (client: RedisClient, channel: string, handlers: RedisLinkHandlers, log: FastifyBaseLogger, part: string) {
    this.channel = channel
    this.handlers = handlers
    this.log = log
    this.part = part
    this.client = client
    this.echoChannel = `${channel}:echo:${randomUUID()}`
    this.echoTimer = setInterval(this.checkEcho, ECHO_INTERVAL_MS)
    this.echoTimer.unref()
    this.commands = unqueuedConnection(client)
    this.commands.on('error', this.onConnectionError)
    this.commands.on('ready', this.onCommandsReady)
    this.openSubscriber()
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
    this.dropSubscriber()
  }

  /**
   * A new subscriber connection, which subscribes whenever it is ready: a
   * duplicate of the app's client, or on a Cluster of one of its masters
   * (none yet while the Cluster does not know its nodes: the next echo, or
   * the commands connection's 'ready', tries again).
   */
  private openSubscriber (): void {
    const masters = isClusterClient(this.commands) ? this.commands.nodes('master') : [this.client]
    const source = masters[Math.floor(Math.random() * masters.length)]
    if (source === undefined) return
    const subscriber = source.duplicate({ lazyConnect: false })
    subscriber.on('error', this.onConnectionError)
    subscriber.on('close', this.onSubscriberClosed)
    subscriber.on('message', this.onMessage)
    subscriber.on('ready', this.onSubscriberReady)
    this.subscriber = subscriber
  }

  /** Closes the subscriber connection; what it still says is not heard (its errors are still logged). */
  private dropSubscriber (): void {
    const subscriber = this.subscriber
    if (subscriber === undefined) return
    this.subscriber = undefined
    subscriber.off('ready', this.onSubscriberReady)
    subscriber.off('message', this.onMessage)
    subscriber.off('close', this.onSubscriberClosed)
    subscriber.disconnect()
  }

  /** The subscription is lost; not once closed (a subscription on its way then fails for that reason). */
  private lost (error: unknown): void {
    if (this.closed) return
    this.subscribedNow = false
    this.handlers.subscriptionLost(error)
  }
}
