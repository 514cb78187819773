import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { RedisClient } from '../redis/redis-client.js'
import type { LuaScript } from '../redis/lua-script.js'
import { RedisLink } from '../redis/redis-link.js'
import { Deadlines } from '../time/deadlines.js'
import { within } from '../time/timeout.js'
import type { BreakerState, CallOutcome } from './circuit-state.js'
import { FleetCircuit } from './fleet-circuit.js'
import type { FleetLink, FleetSettings, FleetState, TrialAnswer } from './fleet-circuit.js'
import { ISOLATE, OPEN, READ, REPORT, SETTLE, TRIAL } from './fleet-scripts.js'
import { Presence } from './presence.js'

/** Where and how the fleet's breakers are kept. */
export interface FleetStoreSettings {
  /** An ioredis `Redis` or `Cluster`. */
  client: RedisClient
  /** Prefix of every breaker's keys, and of the list of live instances. */
  prefix: string
  /** Channel the state changes are published on. */
  channel: string
  /** Instances whose failures it takes to trip the fleet (fewer when fewer are alive). */
  quorum: number
  /** Longest wait for Redis on a decision (a half-open trial). */
  timeoutMs: number
}

/** Longest wait for Redis in the background (counts, reads, settling). */
const BACKGROUND_TIMEOUT_MS = 1000
/** Successes are sent at least this often. */
const BATCH_MS = 100
/** How often breakers whose state could not be read are read again. */
const RECOVERY_INTERVAL_MS = 1000
const STATES: readonly BreakerState[] = ['closed', 'open', 'half-open', 'isolated']

type ScriptReply = [state: string, generation: number, openUntil: number, openings: number, answer: number, epoch: string]

interface Member { circuit: FleetCircuit, localOpenMs: () => number }

/** The state in a script's reply or a message's fields, or undefined if they do not make one. */
function stateOf ([state, generation, openUntil, openings, , epoch]: unknown[]): FleetState | undefined {
  const known = STATES.find((candidate) => candidate === state)
  if (known === undefined || !Number.isInteger(generation) || !Number.isFinite(openUntil) || !Number.isInteger(openings) || typeof epoch !== 'string') return undefined
  return { state: known, generation: generation as number, openUntil: openUntil as number, openings: openings as number, epoch }
}

interface Message { name?: unknown, state?: unknown, generation?: unknown, openUntil?: unknown, openings?: unknown, epoch?: unknown, kind?: unknown }

function parseMessage (text: string): Message | undefined {
  try {
    const parsed: unknown = JSON.parse(text)
    return typeof parsed === 'object' && parsed !== null ? parsed : undefined
  } catch {
    return undefined
  }
}

/**
 * The Redis side of fleet-wide breakers, on a `RedisLink` (a subscriber, and
 * a commands connection that never queues). State changes arrive as
 * messages; each breaker's state is read when it joins and again whenever
 * it may have been missed. Each breaker follows the fleet on its own: a
 * command that fails (Redis unreachable or slow, or the Cluster slot of its
 * keys lost) makes that breaker decide alone (`synced` false) until its
 * state is read again, retried every second, and sends no counts meanwhile;
 * a lost subscription makes every breaker decide alone (counts are still
 * sent: Redis checks their generation), and every breaker is read again once
 * it is back. An outage is logged once, and its end. No Redis error reaches
 * a caller.
 */
export class FleetStore implements FleetLink {
  private readonly settings: FleetStoreSettings
  private readonly log: FastifyBaseLogger
  /** This instance, as the scripts count reporters and isolation holders, and as `Presence` lists it. */
  private readonly instance = randomUUID()
  private readonly members = new Map<string, Member>()
  private readonly link: RedisLink
  private readonly presence: Presence
  /** Waits for Redis on a decision (`settings.timeoutMs`) and in the background. */
  private readonly decisionWaits: Deadlines
  private readonly backgroundWaits = new Deadlines(BACKGROUND_TIMEOUT_MS)
  /** An outage was logged and not yet its end. */
  private outageLogged = false
  private closed = false
  private flushTimer: NodeJS.Timeout | undefined
  private recoveryTimer: NodeJS.Timeout | undefined
  private reloading: Promise<void> | undefined
  /** Settles once the breakers were first read (or the store closed): what `start()` waits for. */
  private readonly firstSync: Promise<void>
  private markFirstSync!: () => void

  constructor (settings: FleetStoreSettings, log: FastifyBaseLogger) {
    this.settings = settings
    this.log = log
    this.decisionWaits = new Deadlines(settings.timeoutMs)
    this.firstSync = new Promise<void>((resolve) => { this.markFirstSync = resolve })
    this.link = new RedisLink(settings.client, settings.channel, {
      subscribed: () => this.reload(),
      subscriptionLost: (error) => this.subscriptionLost(error),
      commandsReady: () => {
        this.presence.announce()
        this.reload()
      },
      message: (text) => this.onMessage(text)
    }, log, 'circuit breakers')
    this.presence = new Presence(this.link, `${settings.prefix}instances`, settings.channel, this.instance, log)
  }

  get subscribed (): boolean {
    return this.link.subscribed
  }

  get fleetInstances (): number | undefined {
    return this.presence.instances
  }

  /** Waits (at most a second) for the first reading of the fleet's state and size; never fails start-up. */
  async start (): Promise<void> {
    await within(Promise.all([this.firstSync, this.presence.firstCount]), this.backgroundWaits).catch(() => {
      this.outage(new Error('Redis did not answer at start-up'), 'starting')
    })
  }

  /** A breaker of this app joins the fleet; `localOpenMs` tells how long its own breaker stays open. */
  join (name: string, settings: FleetSettings, onChange: () => void, localOpenMs: () => number): FleetCircuit {
    const member = { circuit: new FleetCircuit(name, settings, this, onChange), localOpenMs }
    this.members.set(name, member)
    if (this.link.subscribed && this.link.commandsReady) {
      this.sync(member).catch((error: unknown) => this.lost(member.circuit, error, 'reading a new breaker'))
    }
    return member.circuit
  }

  report (circuit: FleetCircuit, generation: number, calls: number, failures: number): void {
    const { minimumCalls, failureRatio, windowMs } = circuit.settings
    const openMs = failures > 0 ? circuit.openMs(1, undefined) : 0
    this.inBackground(circuit, REPORT, [generation, this.instance, calls, failures, minimumCalls, failureRatio, this.presence.quorum(this.settings.quorum), windowMs, openMs])
  }

  async trial (circuit: FleetCircuit): Promise<TrialAnswer> {
    const { halfOpenMaxCalls, trialLeaseMs } = circuit.settings
    const asked = this.run(circuit, TRIAL, [halfOpenMaxCalls, trialLeaseMs])
    try {
      const reply = await within(asked, this.decisionWaits) as ScriptReply
      if (reply[4] === 1) return { granted: true, generation: reply[1] }
      // The fleet closed meanwhile: the closed path decides.
      return { granted: false, local: reply[0] === 'closed' }
    } catch (error) {
      this.lost(circuit, error, 'asking for a trial')
      // A grant that arrives after we gave up is handed back at once.
      asked.then((reply) => {
        if ((reply as ScriptReply)[4] === 1) this.settle(circuit, (reply as ScriptReply)[1], 'neutral', 0)
      }, () => {})
      return { granted: false, local: true }
    }
  }

  settle (circuit: FleetCircuit, generation: number, outcome: CallOutcome, openMs: number): void {
    this.inBackground(circuit, SETTLE, [generation, outcome, circuit.settings.halfOpenMaxCalls, openMs])
  }

  isolate (circuit: FleetCircuit, holds: number): void {
    if (circuit.tracked) this.inBackground(circuit, ISOLATE, [this.instance, holds])
  }

  scheduleFlush (): void {
    if (this.flushTimer !== undefined) return
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined
      for (const { circuit } of this.members.values()) circuit.flush()
    }, BATCH_MS)
    this.flushTimer.unref()
  }

  /** Leaves the list of live instances and closes our connections; isolations held stay held. */
  async close (): Promise<void> {
    this.closed = true
    clearTimeout(this.flushTimer)
    clearInterval(this.recoveryTimer)
    this.markFirstSync()
    await this.presence.leave()
    this.link.close()
  }

  /** The subscriber hears our channel only. */
  private onMessage (text: string): void {
    const message = parseMessage(text)
    if (message === undefined) return
    if (message.kind === 'presence') {
      this.presence.announce()
      return
    }
    const member = typeof message.name === 'string' ? this.members.get(message.name) : undefined
    if (member === undefined) return
    if (message.kind === 'slot') {
      if (typeof message.generation === 'number' && typeof message.epoch === 'string') member.circuit.slotFreed(message.generation, message.epoch)
      return
    }
    this.apply(member.circuit, [message.state, message.generation, message.openUntil, message.openings, 0, message.epoch])
  }

  /** Applies a state from Redis, or says it was not one. */
  private apply (circuit: FleetCircuit, fields: unknown[]): void {
    const state = stateOf(fields)
    if (state === undefined) this.log.warn({ breaker: circuit.name }, 'circuit breakers: ignored a malformed state from Redis')
    else circuit.apply(state)
  }

  /** Runs a script on a breaker's keys (one hash tag) with the name, channel and clock first. */
  private async run (circuit: FleetCircuit, script: LuaScript, args: Array<string | number>): Promise<unknown> {
    // With no offline queue, a command sent while disconnected is refused at once.
    const key = `${this.settings.prefix}{${circuit.name}}`
    const reply = await this.link.run(script, [key, `${key}:reporters`, `${key}:isolations`], [circuit.name, this.settings.channel, Date.now(), ...args])
    this.apply(circuit, reply as unknown[])
    return reply
  }

  /** Runs a script in the background, bounded; a failure means this breaker's Redis is unreachable. */
  private inBackground (circuit: FleetCircuit, script: LuaScript, args: Array<string | number>): void {
    within(this.run(circuit, script, args), this.backgroundWaits).catch((error: unknown) => this.lost(circuit, error, 'sending an update'))
  }

  /** Reads a breaker's state and tells the fleet what this instance knows that it may not; then it follows the fleet. */
  private async sync ({ circuit, localOpenMs }: Member): Promise<void> {
    const bounded = async (script: LuaScript, args: Array<string | number>): Promise<unknown> =>
      await within(this.run(circuit, script, args), this.backgroundWaits)
    await bounded(READ, [])
    const holds = circuit.isolationHolds
    if (holds !== undefined) await bounded(ISOLATE, [this.instance, holds])
    const openMs = localOpenMs()
    if (circuit.closed && openMs > 0) await bounded(OPEN, [Math.ceil(openMs)])
    circuit.track(true)
  }

  /**
   * Reads again every breaker whose state is not known: a command for it
   * failed, or the subscription was lost since it was read (one reading at
   * a time, the breakers side by side).
   */
  private reload (): void {
    if (this.closed || this.reloading !== undefined || !this.link.commandsReady || !this.link.subscribed) return
    const reading = this.readMembers().finally(() => { this.reloading = undefined })
    this.reloading = reading
  }

  private async readMembers (): Promise<void> {
    const reading = [...this.members.values()].filter(({ circuit }) => !circuit.known)
    const results = await Promise.allSettled(reading.map(async (member) => await this.sync(member)))
    results.forEach((result, i) => {
      if (result.status === 'rejected') this.lost((reading[i] as Member).circuit, result.reason, 'reading the fleet\'s state')
    })
    this.markFirstSync()
    if (this.closed || !this.link.subscribed || [...this.members.values()].some(({ circuit }) => !circuit.known)) return
    clearInterval(this.recoveryTimer)
    this.recoveryTimer = undefined
    if (this.outageLogged) {
      this.outageLogged = false
      this.log.info('circuit breakers: Redis is reachable again; following the fleet\'s state')
    }
  }

  /** A command for this breaker failed: it decides alone until its state is read again. */
  private lost (circuit: FleetCircuit, error: unknown, during: string): void {
    circuit.track(false)
    this.outage(error, during, circuit.name)
  }

  /**
   * The subscription is lost: no breaker follows the fleet until it is back
   * and each is read again (their counts are still sent).
   */
  private subscriptionLost (error: unknown): void {
    for (const { circuit } of this.members.values()) circuit.stale()
    this.outage(error, 'listening')
  }

  /**
   * Logs an outage once (then at debug level), and reads again every second
   * until every breaker is followed; not once the store is closing (a command
   * still on its way then fails for that reason).
   */
  private outage (error: unknown, during: string, breaker?: string): void {
    if (this.closed) return
    if (!this.outageLogged) {
      this.outageLogged = true
      this.log.warn({ err: error, during, breaker }, 'circuit breakers: Redis is unreachable or slow; each breaker concerned decides alone until it is back')
    } else {
      this.log.debug({ err: error, during, breaker }, 'circuit breakers: Redis is still unreachable or slow')
    }
    if (this.recoveryTimer === undefined) {
      this.recoveryTimer = setInterval(() => this.reload(), RECOVERY_INTERVAL_MS)
      this.recoveryTimer.unref()
    }
  }
}
