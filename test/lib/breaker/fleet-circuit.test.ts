/**
 * `FleetCircuit` on its own: one breaker's view of the fleet-wide state, with
 * a fake `FleetLink` in place of the Redis store. What the store does to a
 * circuit is played by hand: `apply()` (a message or a script's reply),
 * `track()` (its state was read, or a command for it failed), `stale()` (the
 * subscription was lost) and `slotFreed()` (a neutral trial's message).
 */
import { ConstantBackoff, ExponentialBackoff, noJitterGenerator } from 'cockatiel'
import type { IBackoff, IBackoffFactory, IHalfOpenAfterBackoffContext } from 'cockatiel'
import { test } from 'tap'
import type { CallOutcome } from '../../../plugins/lib/breaker/circuit-state.js'
import { FleetCircuit } from '../../../plugins/lib/breaker/fleet-circuit.js'
import type { FleetLink, FleetSettings, FleetState, TrialAnswer } from '../../../plugins/lib/breaker/fleet-circuit.js'
import { useFakeClock } from '../../fixtures/clock.js'

const SETTINGS: FleetSettings = {
  failureRatio: 0.6,
  minimumCalls: 3,
  windowMs: 30_000,
  halfOpenMaxCalls: 2,
  halfOpenAfter: new ExponentialBackoff({ initialDelay: 1000, maxDelay: 60_000, generator: noJitterGenerator }),
  trialLeaseMs: 5000
}

const EPOCH = 'epoch-1'
/** The time of day in tests that pass it (`trial()` reads `Date`: those tests fake it). */
const NOW = Date.UTC(2026, 0, 1)
const failed = new Error('dependency failed')

/** What the circuit asked of its link, in order. */
type Sent =
  | { report: { generation: number, calls: number, failures: number } }
  | { settle: { generation: number, outcome: CallOutcome, openMs: number } }
  | { isolate: number }

/** A `FleetLink` that records what it is asked and answers trials as told. */
class FakeLink implements FleetLink {
  subscribed = true
  fleetInstances: number | undefined = undefined
  readonly sent: Sent[] = []
  /** Flushes asked for with `scheduleFlush()`. */
  flushesAsked = 0
  /** Trials asked for. */
  trialsAsked = 0
  /** The circuits the calls named, to check they name the circuit itself. */
  readonly circuits = new Set<FleetCircuit>()
  /** The next trial's answer; may act on the circuit first, as the store applies a script's reply before answering. */
  answer: (circuit: FleetCircuit) => TrialAnswer = () => ({ granted: false, local: true })

  report (circuit: FleetCircuit, generation: number, calls: number, failures: number): void {
    this.circuits.add(circuit)
    this.sent.push({ report: { generation, calls, failures } })
  }

  async trial (circuit: FleetCircuit): Promise<TrialAnswer> {
    this.circuits.add(circuit)
    this.trialsAsked++
    return this.answer(circuit)
  }

  settle (circuit: FleetCircuit, generation: number, outcome: CallOutcome, openMs: number): void {
    this.circuits.add(circuit)
    this.sent.push({ settle: { generation, outcome, openMs } })
  }

  isolate (circuit: FleetCircuit, holds: number): void {
    this.circuits.add(circuit)
    this.sent.push({ isolate: holds })
  }

  scheduleFlush (): void {
    this.flushesAsked++
  }
}

/** A circuit on a fake link, with the number of times it said it changed. */
function made (settings: Partial<FleetSettings> = {}): { circuit: FleetCircuit, link: FakeLink, changes: () => number } {
  const link = new FakeLink()
  let changes = 0
  const circuit = new FleetCircuit('db', { ...SETTINGS, ...settings }, link, () => { changes++ })
  return { circuit, link, changes: () => changes }
}

/** A circuit whose state the store read (tracked and fresh), on a subscribed link: it follows the fleet. */
function synced (settings: Partial<FleetSettings> = {}): ReturnType<typeof made> {
  const parts = made(settings)
  parts.circuit.track(true)
  return parts
}

function fleet (state: FleetState['state'], generation: number, fields: Partial<FleetState> = {}): FleetState {
  return { state, generation, openUntil: 0, openings: 0, epoch: EPOCH, ...fields }
}

test('a new circuit sees a closed fleet in generation 0, follows nothing yet, and leaves every call to the local breaker', async (t) => {
  const { circuit, link, changes } = made()
  t.equal(circuit.name, 'db')
  t.equal(circuit.settings.trialLeaseMs, SETTINGS.trialLeaseMs, 'the settings it was made with')
  t.equal(circuit.closed, true)
  t.equal(circuit.generation, 0)
  t.equal(circuit.tracked, false, 'not read yet')
  t.equal(circuit.known, false)
  t.equal(circuit.synced, false, 'not synced while unknown, even subscribed')
  t.equal(circuit.stateAt(NOW), undefined, 'the local breaker decides')
  t.equal(circuit.admission(NOW), 'local')
  t.equal(circuit.openRemainingMs(NOW), 0)
  t.equal(circuit.isolationHolds, undefined, 'never held an isolation')
  t.equal(changes(), 0)
  t.same(link.sent, [])
})

test('fleetInstances is the link\'s count, read each time', async (t) => {
  const { circuit, link } = made()
  t.equal(circuit.fleetInstances, undefined, 'not counted yet')
  link.fleetInstances = 3
  t.equal(circuit.fleetInstances, 3)
  link.fleetInstances = 2
  t.equal(circuit.fleetInstances, 2, 'follows a new count')
})

test('track(true) makes its state known, track(false) unknown again; onChange is told only when known changes', async (t) => {
  const { circuit, changes } = made()
  circuit.track(true)
  t.equal(circuit.tracked, true)
  t.equal(circuit.known, true)
  t.equal(circuit.synced, true, 'known and subscribed')
  t.equal(changes(), 1, 'told')
  circuit.track(true)
  t.equal(changes(), 1, 'read again: nothing changed, nothing told')
  circuit.track(false)
  t.equal(circuit.tracked, false, 'a command failed')
  t.equal(circuit.known, false)
  t.equal(circuit.synced, false)
  t.equal(changes(), 2, 'told')
  circuit.track(false)
  t.equal(changes(), 2, 'another failure: nothing told')
})

test('stale(): a lost subscription makes a tracked circuit unknown until its state is read again', async (t) => {
  const { circuit, changes } = synced()
  circuit.stale()
  t.equal(circuit.tracked, true, 'its commands still work')
  t.equal(circuit.known, false, 'a change may have gone unheard')
  t.equal(circuit.synced, false)
  t.equal(changes(), 2, 'told')
  circuit.track(true)
  t.equal(circuit.known, true, 'read again: known')
  t.equal(changes(), 3)
})

test('a failed command after a lost subscription: reading it again makes it known, tracked and fresh at once', async (t) => {
  const { circuit } = synced()
  circuit.stale()
  circuit.track(false)
  t.equal(circuit.known, false)
  circuit.track(true)
  t.equal(circuit.known, true, 'one reading mends both')
})

test('synced needs the subscription as well as a known state', async (t) => {
  const { circuit, link } = synced()
  link.subscribed = false
  t.equal(circuit.known, true)
  t.equal(circuit.synced, false, 'not subscribed: not synced')
  link.subscribed = true
  t.equal(circuit.synced, true)
})

test('apply(): follows the fleet\'s state when its generation is later or its epoch another; an older or equal one changes nothing', async (t) => {
  const { circuit, changes } = synced()
  const told = changes()
  circuit.apply(fleet('open', 3, { openUntil: NOW + 1000, openings: 1 }))
  t.equal(circuit.closed, false)
  t.equal(circuit.stateAt(NOW), 'open')
  t.equal(circuit.generation, 3)
  t.equal(changes(), told + 1, 'told of the change')
  circuit.apply(fleet('closed', 3))
  t.equal(circuit.stateAt(NOW), 'open', 'the same generation again changes nothing')
  circuit.apply(fleet('closed', 2))
  t.equal(circuit.stateAt(NOW), 'open', 'an older generation (a reply overtaken by a message) changes nothing')
  t.equal(changes(), told + 1, 'nor is anything told')
  circuit.apply(fleet('half-open', 4))
  t.equal(circuit.stateAt(NOW), 'half-open')
  t.equal(circuit.generation, 4)
  circuit.apply(fleet('closed', 0, { epoch: 'epoch-2' }))
  t.equal(circuit.closed, true, 'another epoch (Redis started over) is taken even with a lower generation')
  t.equal(circuit.generation, 0)
  t.equal(changes(), told + 3)
})

test('stateAt(): open until its period ends, then half-open; closed and half-open are the local breaker\'s while not synced; isolated always applies', async (t) => {
  const { circuit, link } = synced()
  circuit.apply(fleet('open', 1, { openUntil: NOW + 1000, openings: 1 }))
  t.equal(circuit.stateAt(NOW + 999), 'open')
  t.equal(circuit.stateAt(NOW + 1000), 'half-open', 'an open period that ended reads half-open')
  link.subscribed = false
  t.equal(circuit.stateAt(NOW + 999), 'open', 'a known open period holds without Redis')
  t.equal(circuit.stateAt(NOW + 1000), undefined, 'its half-open is left to the local breaker')
  circuit.apply(fleet('half-open', 2))
  t.equal(circuit.stateAt(NOW), undefined, 'half-open, not synced: the local breaker')
  link.subscribed = true
  t.equal(circuit.stateAt(NOW), 'half-open', 'half-open, synced')
  circuit.apply(fleet('closed', 3))
  t.equal(circuit.stateAt(NOW), undefined, 'closed: the local breaker')
  circuit.apply(fleet('isolated', 4))
  t.equal(circuit.stateAt(NOW), 'isolated')
  circuit.track(false)
  t.equal(circuit.stateAt(NOW), 'isolated', 'isolated holds without Redis')
})

test('openRemainingMs() counts down the fleet\'s open period, never below 0, and is 0 in other states', async (t) => {
  const { circuit } = synced()
  circuit.apply(fleet('open', 1, { openUntil: NOW + 1000, openings: 1 }))
  t.equal(circuit.openRemainingMs(NOW), 1000)
  t.equal(circuit.openRemainingMs(NOW + 400), 600)
  t.equal(circuit.openRemainingMs(NOW + 5000), 0, 'past its end')
  circuit.apply(fleet('half-open', 2, { openUntil: NOW + 1000 }))
  t.equal(circuit.openRemainingMs(NOW), 0, 'half-open')
  circuit.apply(fleet('isolated', 3, { openUntil: NOW + 1000 }))
  t.equal(circuit.openRemainingMs(NOW), 0, 'isolated: no known end')
})

test('admission(): an isolated fleet refuses, synced or not', async (t) => {
  const { circuit, link } = synced()
  circuit.apply(fleet('isolated', 1))
  t.equal(circuit.admission(NOW), 'refuse')
  link.subscribed = false
  circuit.track(false)
  t.equal(circuit.admission(NOW), 'refuse', 'Redis unreachable: the isolation still holds')
})

test('admission(): an open fleet refuses until its period ends, even while Redis is unreachable; then a synced circuit asks and an unsynced one is local', async (t) => {
  const { circuit, link } = synced()
  circuit.apply(fleet('open', 1, { openUntil: NOW + 1000, openings: 1 }))
  t.equal(circuit.admission(NOW + 999), 'refuse')
  t.equal(circuit.admission(NOW + 1000), 'ask', 'the period ended: ask the fleet for a trial')
  link.subscribed = false
  t.equal(circuit.admission(NOW + 999), 'refuse', 'a known open period holds without Redis')
  t.equal(circuit.admission(NOW + 1000), 'local', 'after it, the local breaker decides')
})

test('admission(): a half-open fleet is asked while synced, and left to the local breaker while not', async (t) => {
  const { circuit, link } = synced()
  circuit.apply(fleet('half-open', 2))
  t.equal(circuit.admission(NOW), 'ask')
  circuit.stale()
  t.equal(circuit.admission(NOW), 'local', 'subscription lost: not known')
  circuit.track(true)
  link.subscribed = false
  t.equal(circuit.admission(NOW), 'local', 'not subscribed')
})

test('trial(): a granted trial is handed back with its generation, and the next call still asks', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const { circuit, link } = synced()
  circuit.apply(fleet('half-open', 2))
  link.answer = () => ({ granted: true, generation: 2 })
  t.same(await circuit.trial(), { granted: true, generation: 2 })
  t.equal(link.trialsAsked, 1)
  t.same([...link.circuits], [circuit], 'the link was asked for this circuit')
  t.equal(circuit.admission(clock.now), 'ask', 'a grant does not make it refuse')
})

test('trial(): once a half-open fleet refuses a trial (all slots taken), calls are refused without asking until the trial lease has run out', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const { circuit, link } = synced()
  circuit.apply(fleet('half-open', 2))
  link.answer = () => ({ granted: false, local: false })
  t.same(await circuit.trial(), { granted: false, local: false }, 'the refusal is handed back')
  const refusedAt = clock.now
  t.equal(circuit.admission(refusedAt), 'refuse', 'the slots are taken: no need to ask')
  t.equal(circuit.admission(refusedAt + SETTINGS.trialLeaseMs - 1), 'refuse', 'until the lease of every trial taken has run out')
  t.equal(circuit.admission(refusedAt + SETTINGS.trialLeaseMs), 'ask', 'then ask again: a slot whose instance died is free by then')
})

test('trial(): a refusal in one half-open generation does not refuse the next one, even within the lease', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const { circuit, link } = synced()
  circuit.apply(fleet('half-open', 2))
  link.answer = () => ({ granted: false, local: false })
  await circuit.trial()
  t.equal(circuit.admission(clock.now), 'refuse')
  circuit.apply(fleet('open', 3, { openUntil: clock.now + 100, openings: 2 }))
  circuit.apply(fleet('half-open', 4))
  t.equal(circuit.admission(clock.now), 'ask', 'a new half-open period: its slots are free')
})

test('trial(): a refusal that leaves the call to the local breaker (Redis unreachable) does not make a half-open fleet refuse', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const { circuit, link } = synced()
  circuit.apply(fleet('half-open', 2))
  link.answer = () => ({ granted: false, local: true })
  await circuit.trial()
  t.equal(circuit.admission(clock.now), 'ask', 'nothing was learnt about the slots')
})

test('trial(): a refusal whose reply brought an open fleet is no full half-open: once that period ends, it asks', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const { circuit, link } = synced()
  circuit.apply(fleet('half-open', 2))
  link.answer = (asked) => {
    // Another instance's trial failed just before: the reply says open again.
    asked.apply(fleet('open', 3, { openUntil: clock.now + 100, openings: 2 }))
    return { granted: false, local: false }
  }
  await circuit.trial()
  t.equal(circuit.admission(clock.now + 99), 'refuse', 'open')
  t.equal(circuit.admission(clock.now + 100), 'ask', 'its period ended: ask, though the lease (5 s) has not run out')
})

test('slotFreed(): a neutral trial that frees a slot of the full generation lets it ask again at once; another generation or epoch changes nothing', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const { circuit, link } = synced()
  circuit.apply(fleet('half-open', 2))
  link.answer = () => ({ granted: false, local: false })
  await circuit.trial()
  circuit.slotFreed(1, EPOCH)
  t.equal(circuit.admission(clock.now), 'refuse', 'a slot of an older generation')
  circuit.slotFreed(2, 'epoch-0')
  t.equal(circuit.admission(clock.now), 'refuse', 'a slot of another epoch')
  circuit.slotFreed(2, EPOCH)
  t.equal(circuit.admission(clock.now), 'ask', 'a slot of this half-open period is free')
})

test('record(): on the closed path a failure is sent at once with the successes pending; successes wait for the batch', async (t) => {
  const { circuit, link } = synced()
  circuit.apply(fleet('closed', 3))
  circuit.record(3, 'success')
  circuit.record(3, 'success')
  t.equal(link.flushesAsked, 2, 'each success asks for a flush within the batching period')
  t.same(link.sent, [], 'nothing sent yet')
  circuit.record(3, 'failure')
  t.same(link.sent, [{ report: { generation: 3, calls: 3, failures: 1 } }], 'the failure and the two successes, in generation 3')
  t.equal(link.flushesAsked, 2, 'a failure asks for no flush: it was sent')
  circuit.flush()
  t.equal(link.sent.length, 1, 'nothing pending: a flush sends nothing')
  circuit.record(3, 'success')
  circuit.flush()
  t.same(link.sent.at(-1), { report: { generation: 3, calls: 1, failures: 0 } }, 'the batch flush sends the success')
  t.same([...link.circuits], [circuit])
})

test('record(): neutral results, results of another generation, results while the fleet is not closed and results while untracked are not counted', async (t) => {
  const { circuit, link } = synced()
  circuit.apply(fleet('closed', 3))
  circuit.record(3, 'neutral')
  circuit.record(2, 'failure')
  circuit.record(4, 'failure')
  circuit.flush()
  t.same(link.sent, [], 'neutral, older and newer generations: nothing sent')
  t.equal(link.flushesAsked, 0)

  circuit.track(false)
  circuit.record(3, 'failure')
  circuit.record(3, 'success')
  circuit.flush()
  t.same(link.sent, [], 'a command for it failed: nothing sent until it is read again')
  circuit.track(true)

  circuit.apply(fleet('half-open', 4))
  circuit.record(4, 'failure')
  circuit.record(4, 'success')
  circuit.flush()
  t.same(link.sent, [], 'a half-open fleet counts trials, not closed-path calls')
  t.equal(link.flushesAsked, 0, 'no flush asked for in any of these cases')

  circuit.apply(fleet('closed', 5))
  circuit.record(5, 'failure')
  t.same(link.sent, [{ report: { generation: 5, calls: 1, failures: 1 } }], 'a counted result is sent')
})

test('record(): counts are still sent while the subscription is lost (Redis checks their generation)', async (t) => {
  const { circuit, link } = synced()
  circuit.apply(fleet('closed', 3))
  circuit.stale()
  t.equal(circuit.known, false)
  circuit.record(3, 'failure')
  t.same(link.sent, [{ report: { generation: 3, calls: 1, failures: 1 } }])
})

test('pending successes of an older generation are dropped: when a result of the new one comes, or when the flush finds the fleet moved on', async (t) => {
  const { circuit, link } = synced()
  circuit.apply(fleet('closed', 3))
  circuit.record(3, 'success')
  circuit.apply(fleet('closed', 5))
  circuit.record(5, 'failure')
  t.same(link.sent, [{ report: { generation: 5, calls: 1, failures: 1 } }], 'the success of generation 3 was not sent with it')

  circuit.record(5, 'success')
  circuit.apply(fleet('open', 6, { openUntil: NOW + 1000, openings: 1 }))
  circuit.flush()
  t.equal(link.sent.length, 1, 'the fleet opened: the pending success is not sent')
  circuit.apply(fleet('closed', 7))
  circuit.flush()
  t.equal(link.sent.length, 1, 'nor later: it was dropped')

  circuit.record(7, 'success')
  circuit.apply(fleet('closed', 8))
  circuit.flush()
  t.equal(link.sent.length, 1, 'a closed fleet of a later generation: dropped too')

  circuit.record(8, 'success')
  circuit.apply(fleet('open', 8, { epoch: 'epoch-2', openUntil: NOW + 1000, openings: 1 }))
  circuit.flush()
  t.equal(link.sent.length, 1, 'an open fleet of a new epoch, whatever its generation: not sent')
})

test('settleTrial(): passes the outcome and generation; a failure carries the open period of the next opening in a row', async (t) => {
  const { circuit, link } = synced()
  circuit.apply(fleet('half-open', 4, { openings: 2 }))
  circuit.settleTrial(4, 'failure', failed)
  circuit.settleTrial(4, 'success', undefined)
  circuit.settleTrial(4, 'neutral', undefined)
  t.same(link.sent, [
    { settle: { generation: 4, outcome: 'failure', openMs: 4000 } },
    { settle: { generation: 4, outcome: 'success', openMs: 0 } },
    { settle: { generation: 4, outcome: 'neutral', openMs: 0 } }
  ], 'after 2 openings in a row, a failed trial opens for the backoff\'s 3rd step (1 s, 2 s, 4 s)')
})

test('openMs(): walks the backoff to the attempt-th opening, passing the error, rounded to at least 1 ms and at most 64 steps', async (t) => {
  const exponential = made().circuit
  t.equal(exponential.openMs(1, failed), 1000)
  t.equal(exponential.openMs(2, failed), 2000)
  t.equal(exponential.openMs(4, failed), 8000)
  t.equal(exponential.openMs(10, failed), 60_000, 'capped at maxDelay')

  t.equal(made({ halfOpenAfter: new ConstantBackoff(0.4) }).circuit.openMs(1, failed), 1, 'never 0 ms')
  t.equal(made({ halfOpenAfter: new ConstantBackoff(1500.6) }).circuit.openMs(1, failed), 1501, 'rounded')

  const seen: Array<{ attempt: number, error: unknown }> = []
  const step = (context: IHalfOpenAfterBackoffContext): IBackoff<IHalfOpenAfterBackoffContext> => {
    seen.push({ attempt: context.attempt, error: (context.result as { error?: unknown }).error })
    return { duration: context.attempt, next: step }
  }
  const counting: IBackoffFactory<IHalfOpenAfterBackoffContext> = { next: step }
  const circuit = made({ halfOpenAfter: counting }).circuit
  t.equal(circuit.openMs(3, failed), 3)
  t.same(seen, [{ attempt: 1, error: failed }, { attempt: 2, error: failed }, { attempt: 3, error: failed }], 'steps 1 to 3, each with the error')
  t.equal(circuit.openMs(1000, failed), 64, 'a backoff is walked at most 64 steps')
})

test('isolate(): each handle sends this instance\'s hold count; a handle released sends the lower count, once; isolationHolds reports it', async (t) => {
  const { circuit, link } = synced()
  const first = circuit.isolate()
  t.equal(circuit.isolationHolds, 1)
  const second = circuit.isolate()
  t.equal(circuit.isolationHolds, 2)
  first.dispose()
  first.dispose()
  t.equal(circuit.isolationHolds, 1, 'released once, even disposed twice')
  second.dispose()
  t.equal(circuit.isolationHolds, 0, 'none held, but held once: a release lost in an outage can be sent again')
  t.same(link.sent, [{ isolate: 1 }, { isolate: 2 }, { isolate: 1 }, { isolate: 0 }])
  t.same([...link.circuits], [circuit])
  t.equal(circuit.closed, true, 'the fleet\'s state changes only when Redis says so')
})
