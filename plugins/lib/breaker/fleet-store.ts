import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { RedisClient } from '../shared/redis-client.js'
import { withinMs } from '../shared/give-up.js'
import type { BreakerState, CallOutcome } from './circuit-state.js'
import { FleetCircuit } from './fleet-circuit.js'
import type { FleetLink, FleetSettings, FleetState, TrialAnswer } from './fleet-circuit.js'
import { ISOLATE, OPEN, READ, REPORT, SETTLE, TRIAL } from './fleet-scripts.js'

/** Where and how the fleet's breakers are kept. */
export interface FleetStoreSettings {
  client: RedisClient
  /** Prefix of every breaker's keys. */
  prefix: string
  /** Channel the state changes are published on. */
  channel: string
  /** Instances whose failures it takes to trip the fleet. */
  quorum: number
  /** Longest wait for Redis on a decision (a half-open trial). */
  timeoutMs: number
}

/** Longest wait for Redis in the background (counts, reads, settling). */
const BACKGROUND_TIMEOUT_MS = 1000
/** Successes are sent at least this often. */
const BATCH_MS = 100
/** How often Redis is tried again while it is unreachable. */
const RECOVERY_INTERVAL_MS = 1000
const STATES: readonly BreakerState[] = ['closed', 'open', 'half-open', 'isolated']

type ScriptReply = [state: string, gen: number, till: number, openings: number, answer: number, epoch: string]

/** The state in a script's reply or a message's fields, or undefined if they do not make one. */
function stateOf ([state, gen, till, openings, , epoch]: unknown[]): FleetState | undefined {
  const known = STATES.find((candidate) => candidate === state)
  if (known === undefined || !Number.isInteger(gen) || !Number.isFinite(till) || !Number.isInteger(openings) || typeof epoch !== 'string') return undefined
  return { state: known, gen: gen as number, till: till as number, openings: openings as number, epoch }
}

function parseMessage (text: string): { n?: unknown, s?: unknown, g?: unknown, t?: unknown, o?: unknown, e?: unknown, k?: unknown } | undefined {
  try {
    const parsed: unknown = JSON.parse(text)
    return typeof parsed === 'object' && parsed !== null ? parsed : undefined
  } catch {
    return undefined
  }
}

/**
 * The Redis side of fleet-wide breakers: a connection for the scripts (no
 * offline queue, nothing resent: a command goes now or fails now) and one
 * subscribed to the channel, a duplicate each of the app's client. State
 * changes arrive as messages; every reconnection reads every breaker's state
 * again and reconciles this instance's isolations and local openings. When
 * Redis is unreachable or slow, each breaker decides alone (`synced` false),
 * the outage is logged once, and Redis is tried again every second. No
 * Redis error reaches a caller.
 */
export class FleetStore implements FleetLink {
  private readonly settings: FleetStoreSettings
  private readonly log: FastifyBaseLogger
  /** This instance, as the scripts count reporters and isolation holders. */
  private readonly instance = randomUUID()
  private readonly circuits = new Map<string, { circuit: FleetCircuit, localOpenMs: () => number }>()
  private readonly commands: RedisClient
  private readonly subscriber: RedisClient
  private subscribedNow = false
  /** Every breaker was read since the last failure; with the subscription up, the fleet is followed. */
  private readOk = false
  /** An outage was logged and not yet its end. */
  private outageLogged = false
  private closed = false
  private flushTimer: NodeJS.Timeout | undefined
  private recoveryTimer: NodeJS.Timeout | undefined
  private reloading: Promise<void> | undefined
  /** Settles once every breaker was first read (or the store closed): what `start()` waits for. */
  private readonly firstSync: Promise<void>
  private markFirstSync!: () => void

  /** The commands connection (re)connected: read again only if an outage made us stop following the fleet (messages come on the other one). */
  private readonly onCommandsReady = (): void => { if (!this.readOk) this.reload() }
  private readonly onSubscriberReady = (): void => {
    this.subscriber.subscribe(this.settings.channel).then(() => {
      this.subscribedNow = true
      this.reload()
    }, (error: unknown) => this.unavailable(error, 'subscribing'))
  }

  private readonly onSubscriberLost = (): void => {
    this.subscribedNow = false
    this.unavailable(new Error('the subscriber connection closed'), 'listening')
  }

  /** ioredis reports every failed reconnection as an error; the outage is logged once. */
  private readonly onConnectionError = (error: Error): void => {
    this.log.debug({ err: error }, 'circuit breakers: Redis connection error')
  }

  /** The subscriber listens to our channel only. */
  private readonly onMessage = (_channel: string, text: string): void => {
    const message = parseMessage(text)
    const entry = typeof message?.n === 'string' ? this.circuits.get(message.n) : undefined
    if (entry === undefined || message === undefined) return
    if (message.k === 'slot') {
      if (typeof message.g === 'number' && typeof message.e === 'string') entry.circuit.slotFreed(message.g, message.e)
      return
    }
    this.apply(entry.circuit, [message.s, message.g, message.t, message.o, 0, message.e])
  }

  constructor (settings: FleetStoreSettings, log: FastifyBaseLogger) {
    this.settings = settings
    this.log = log
    this.firstSync = new Promise<void>((resolve) => { this.markFirstSync = resolve })
    this.subscriber = settings.client.duplicate()
    this.subscriber.on('error', this.onConnectionError)
    this.subscriber.on('close', this.onSubscriberLost)
    this.subscriber.on('message', this.onMessage)
    this.subscriber.on('ready', this.onSubscriberReady)
    this.commands = settings.client.duplicate({ enableOfflineQueue: false, autoResendUnfulfilledCommands: false, lazyConnect: false })
    this.commands.on('error', this.onConnectionError)
    this.commands.on('ready', this.onCommandsReady)
  }

  get synced (): boolean {
    return this.readOk && this.subscribedNow
  }

  /** Waits (at most a second) for the first reading of the fleet's state; never fails start-up. */
  async start (): Promise<void> {
    await withinMs(this.firstSync, BACKGROUND_TIMEOUT_MS).catch(() => {
      this.unavailable(new Error('Redis did not answer at start-up'), 'starting')
    })
  }

  /** A breaker of this app joins the fleet; `localOpenMs` tells how long its own breaker stays open. */
  join (name: string, settings: FleetSettings, onChange: () => void, localOpenMs: () => number): FleetCircuit {
    const circuit = new FleetCircuit(name, settings, this, onChange)
    this.circuits.set(name, { circuit, localOpenMs })
    if (this.synced) this.sync(circuit, localOpenMs).catch((error: unknown) => this.unavailable(error, 'reading a new breaker'))
    return circuit
  }

  report (circuit: FleetCircuit, gen: number, calls: number, failures: number): void {
    const { minimumCalls, failureRatio, windowMs } = circuit.settings
    const openMs = failures > 0 ? circuit.openMs(1, undefined) : 0
    this.inBackground(circuit, REPORT, [gen, this.instance, calls, failures, minimumCalls, failureRatio, this.settings.quorum, windowMs, openMs])
  }

  async trial (circuit: FleetCircuit): Promise<TrialAnswer> {
    const { halfOpenMaxCalls, trialLeaseMs } = circuit.settings
    const asked = this.run(circuit, TRIAL, [halfOpenMaxCalls, trialLeaseMs])
    try {
      const reply = await withinMs(asked, this.settings.timeoutMs)
      const gen = (reply as ScriptReply)[1]
      if ((reply as ScriptReply)[4] === 1) return { granted: true, gen }
      // The fleet closed meanwhile: the closed path decides.
      return { granted: false, local: (reply as ScriptReply)[0] === 'closed' }
    } catch (error) {
      this.unavailable(error, 'asking for a trial')
      // A grant that arrives after we gave up is handed back at once.
      asked.then((reply) => {
        if ((reply as ScriptReply)[4] === 1) this.settle(circuit, (reply as ScriptReply)[1], 'neutral', 0)
      }, () => {})
      return { granted: false, local: true }
    }
  }

  settle (circuit: FleetCircuit, gen: number, outcome: CallOutcome, openMs: number): void {
    this.inBackground(circuit, SETTLE, [gen, outcome, circuit.settings.halfOpenMaxCalls, openMs])
  }

  isolate (circuit: FleetCircuit, holds: number): void {
    if (this.synced) this.inBackground(circuit, ISOLATE, [this.instance, holds])
  }

  scheduleFlush (): void {
    if (this.flushTimer !== undefined) return
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined
      for (const { circuit } of this.circuits.values()) circuit.flush()
    }, BATCH_MS)
    this.flushTimer.unref()
  }

  /** Removes our listeners and closes our connections; isolations held stay held. */
  close (): void {
    this.closed = true
    clearTimeout(this.flushTimer)
    clearInterval(this.recoveryTimer)
    this.markFirstSync()
    this.commands.off('ready', this.onCommandsReady)
    this.commands.disconnect()
    this.subscriber.off('ready', this.onSubscriberReady)
    this.subscriber.off('message', this.onMessage)
    this.subscriber.off('close', this.onSubscriberLost)
    this.subscriber.disconnect()
  }

  /** Applies a state from Redis, or says it was not one. */
  private apply (circuit: FleetCircuit, fields: unknown[]): void {
    const state = stateOf(fields)
    if (state === undefined) this.log.warn({ breaker: circuit.name }, 'circuit breakers: ignored a malformed state from Redis')
    else circuit.apply(state)
  }

  /** Runs a script on a breaker's keys with the name, channel and clock first. */
  private async run (circuit: FleetCircuit, script: string, args: Array<string | number>): Promise<unknown> {
    // With no offline queue, a command sent while disconnected is refused at once.
    const key = `${this.settings.prefix}{${circuit.name}}`
    const reply = await this.commands.eval(script, 3, key, `${key}:reporters`, `${key}:isolations`, circuit.name, this.settings.channel, Date.now(), ...args)
    this.apply(circuit, reply as unknown[])
    return reply
  }

  /** Runs a script in the background, bounded; a failure means Redis is unreachable. */
  private inBackground (circuit: FleetCircuit, script: string, args: Array<string | number>): void {
    withinMs(this.run(circuit, script, args), BACKGROUND_TIMEOUT_MS).catch((error: unknown) => this.unavailable(error, 'sending an update'))
  }

  /** Reads a breaker's state and tells the fleet what this instance knows that it may not. */
  private async sync (circuit: FleetCircuit, localOpenMs: () => number): Promise<void> {
    const bounded = async (script: string, args: Array<string | number>): Promise<unknown> =>
      await withinMs(this.run(circuit, script, args), BACKGROUND_TIMEOUT_MS)
    await bounded(READ, [])
    if (circuit.isolationHolds >= 0) await bounded(ISOLATE, [this.instance, circuit.isolationHolds])
    const openMs = localOpenMs()
    if (circuit.state.state === 'closed' && openMs > 0) await bounded(OPEN, [Math.ceil(openMs)])
  }

  /** Reads every breaker again (one reading at a time). */
  private reload (): void {
    if (this.closed || this.reloading !== undefined || this.commands.status !== 'ready' || !this.subscribedNow) return
    const reading = this.reloadAll().finally(() => { this.reloading = undefined })
    this.reloading = reading
  }

  /** Once every breaker is read with the subscription up, the fleet is followed again. */
  private async reloadAll (): Promise<void> {
    try {
      for (const { circuit, localOpenMs } of this.circuits.values()) await this.sync(circuit, localOpenMs)
      // Should the subscriber drop meanwhile, `synced` stays false until it is back (and reads again).
      this.readOk = true
      clearInterval(this.recoveryTimer)
      this.recoveryTimer = undefined
      if (this.outageLogged) {
        this.outageLogged = false
        this.log.info('circuit breakers: Redis is reachable again; following the fleet\'s state')
      }
      for (const { circuit } of this.circuits.values()) circuit.changed()
      this.markFirstSync()
    } catch (error) {
      this.unavailable(error, 'reading the fleet\'s state')
    }
  }

  /** Redis failed us: each breaker decides alone until a reload succeeds. */
  private unavailable (error: unknown, during: string): void {
    if (this.closed) return
    const wasAvailable = this.synced
    this.readOk = false
    if (!this.outageLogged) {
      this.outageLogged = true
      this.log.warn({ err: error, during }, 'circuit breakers: Redis is unreachable or slow; each breaker decides alone until it is back')
    } else {
      this.log.debug({ err: error, during }, 'circuit breakers: Redis is still unreachable or slow')
    }
    if (this.recoveryTimer === undefined) {
      this.recoveryTimer = setInterval(() => this.reload(), RECOVERY_INTERVAL_MS)
      this.recoveryTimer.unref()
    }
    if (wasAvailable) for (const { circuit } of this.circuits.values()) circuit.changed()
  }
}
