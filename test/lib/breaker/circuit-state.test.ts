/**
 * `CircuitStateMachine` on its own, state by state, on a fake `Date`. The
 * settings follow gobreaker v2's `newCustom` (sony/gobreaker,
 * v2/gobreaker_test.go): MaxRequests 3, Interval 30 s, Timeout 90 s, trip at
 * >= 3 requests and >= 60 % failures; a test that mirrors one of gobreaker's
 * carries its name. A call is `admit()` then `settle()`; a call "in flight"
 * was admitted and is not settled yet.
 */
import { ConstantBackoff } from 'cockatiel'
import type { IBackoff, IBackoffFactory, IHalfOpenAfterBackoffContext } from 'cockatiel'
import { test } from 'tap'
import { CircuitStateMachine } from '../../../plugins/lib/breaker/circuit-state.js'
import type { BreakerState, CallOutcome, CircuitSettings } from '../../../plugins/lib/breaker/circuit-state.js'
import { useFakeClock } from '../../fixtures/clock.js'

type Transition = [from: BreakerState, to: BreakerState, error: unknown]

/** gobreaker's `newCustom`. */
const CUSTOM: CircuitSettings = {
  failureRatio: 0.6,
  minimumCalls: 3,
  windowMs: 30_000,
  halfOpenMaxCalls: 3,
  halfOpenAfter: new ConstantBackoff(90_000)
}

const failed = new Error('dependency failed')

/** A machine and the transitions it told its listener, in order. */
function made (settings: Partial<CircuitSettings> = {}): { machine: CircuitStateMachine, transitions: Transition[] } {
  const transitions: Transition[] = []
  const machine = new CircuitStateMachine({ ...CUSTOM, ...settings }, (from, to, error) => { transitions.push([from, to, error]) })
  return { machine, transitions }
}

/** One call, settled at once; returns whether it was admitted. */
function call (machine: CircuitStateMachine, outcome: CallOutcome, error: unknown = failed): boolean {
  const generation = machine.admit()
  if (generation !== undefined) machine.settle(generation, outcome, outcome === 'failure' ? error : undefined)
  return generation !== undefined
}

function calls (machine: CircuitStateMachine, outcomes: CallOutcome[]): void {
  for (const outcome of outcomes) call(machine, outcome)
}

/** Admits a call and leaves it in flight: its generation. */
function inFlight (machine: CircuitStateMachine): number {
  const generation = machine.admit()
  if (generation === undefined) throw new Error('the call was refused')
  return generation
}

/** Trips a machine in a fresh closed window: 3 failures of 3. */
function trip (machine: CircuitStateMachine): void {
  calls(machine, ['failure', 'failure', 'failure'])
}

/** A backoff whose k-th step in a row lasts `durationOf(k)`, recording the context of every step. */
function recordingBackoff (durationOf: (attempt: number) => number, seen: Array<{ attempt: number, error: unknown }>): IBackoffFactory<IHalfOpenAfterBackoffContext> {
  const step = (context: IHalfOpenAfterBackoffContext): IBackoff<IHalfOpenAfterBackoffContext> => {
    seen.push({ attempt: context.attempt, error: (context.result as { error?: unknown }).error })
    return { duration: durationOf(context.attempt), next: step }
  }
  return { next: step }
}

test('a new machine is closed in generation 0, with an empty window, no open period and no trials', async (t) => {
  useFakeClock(t, ['Date'])
  const { machine, transitions } = made()
  t.equal(machine.state, 'closed')
  t.equal(machine.generation, 0)
  t.same(machine.window, { calls: 0, failures: 0 })
  t.equal(machine.openRemainingMs, 0)
  t.equal(machine.halfOpenCalls, 0)
  t.same(transitions, [], 'nothing told')
})

test('TestCustomCircuitBreaker: 2 failures in 3 calls (2/3 >= 0.6 at minimumCalls 3) open it for 90 s, told with the failure that tripped it', async (t) => {
  useFakeClock(t, ['Date'])
  const { machine, transitions } = made()
  const tripping = new Error('the third call')
  t.ok(call(machine, 'success'), 'a success admitted')
  t.ok(call(machine, 'failure'), 'a failure admitted')
  t.equal(machine.state, 'closed', '1 failure in 2 calls: below minimumCalls')
  t.same(machine.window, { calls: 2, failures: 1 })
  t.ok(call(machine, 'failure', tripping), 'the tripping call admitted')
  t.equal(machine.state, 'open')
  t.same(transitions, [['closed', 'open', tripping]], 'closed -> open, with the failure that tripped it')
  t.equal(machine.generation, 1, 'the change started a new generation')
  t.equal(machine.openRemainingMs, 90_000, 'the backoff\'s first step')
  t.same(machine.window, { calls: 0, failures: 0 }, 'an open machine shows no window')
})

test('minimumCalls: failures below it keep the machine closed, even all of them; the call that reaches it trips', async (t) => {
  useFakeClock(t, ['Date'])
  const { machine } = made({ minimumCalls: 5 })
  calls(machine, ['failure', 'failure', 'failure', 'failure'])
  t.equal(machine.state, 'closed', '4 of 4 failed, 4 < minimumCalls 5')
  t.same(machine.window, { calls: 4, failures: 4 })
  call(machine, 'failure')
  t.equal(machine.state, 'open', '5 of 5 failed')
})

test('failureRatio: a ratio just under it keeps the machine closed; reaching it exactly trips', async (t) => {
  useFakeClock(t, ['Date'])
  const { machine } = made()
  calls(machine, ['success', 'success', 'failure', 'failure'])
  t.equal(machine.state, 'closed', '2/4 = 0.5 < 0.6')
  t.same(machine.window, { calls: 4, failures: 2 })
  call(machine, 'failure')
  t.equal(machine.state, 'open', '3/5 = 0.6 trips')
})

test('calls are counted when admitted: successes still in flight hold the ratio down, and settling them adds nothing', async (t) => {
  useFakeClock(t, ['Date'])
  const { machine } = made()
  const pending = [inFlight(machine), inFlight(machine), inFlight(machine)]
  t.same(machine.window, { calls: 3, failures: 0 }, 'three calls in flight count already')
  calls(machine, ['failure', 'failure', 'failure'])
  t.equal(machine.state, 'closed', '3 failures in 6 calls: 0.5 < 0.6')
  for (const generation of pending) machine.settle(generation, 'success')
  t.same(machine.window, { calls: 6, failures: 3 }, 'their successes changed no count')
  call(machine, 'failure')
  t.equal(machine.state, 'closed', '4/7 < 0.6')
  call(machine, 'failure')
  t.equal(machine.state, 'open', '5/8 >= 0.6')
})

test('TestGeneration: the window ends windowMs after its first call, in a new generation with no transition; results from the old one are ignored', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const { machine, transitions } = made()
  // Three failures that would trip the machine if they counted in the next window.
  const late = [inFlight(machine), inFlight(machine), inFlight(machine)]
  call(machine, 'success')
  clock.tick(CUSTOM.windowMs - 1)
  t.same(machine.window, { calls: 4, failures: 0 }, 'the last millisecond of the window keeps its counts')
  t.equal(machine.generation, 0, 'still generation 0')
  clock.tick(1)
  t.same(machine.window, { calls: 0, failures: 0 }, 'window over: counts cleared')
  t.equal(machine.generation, 1, 'a new generation')
  t.equal(machine.state, 'closed')
  t.same(transitions, [], 'a window ending is no state change')
  for (const generation of late) machine.settle(generation, 'failure', failed)
  t.equal(machine.state, 'closed', 'three late failures did not trip the new window')
  t.same(machine.window, { calls: 0, failures: 0 }, 'nor were they counted')
})

test('a failure that arrives after its window ended, before anything read the state, is ignored too', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const { machine } = made({ minimumCalls: 1, failureRatio: 0.5 })
  const late = inFlight(machine)
  clock.tick(CUSTOM.windowMs)
  machine.settle(late, 'failure', failed)
  t.equal(machine.state, 'closed', 'one failure would trip at minimumCalls 1: it was not counted')
  t.equal(machine.generation, 1, 'the window it belonged to ended')
  t.same(machine.window, { calls: 0, failures: 0 })
})

test('the window is fixed: it starts at its first call, not when the machine is made, and later calls do not move its end', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const { machine } = made()
  clock.tick(50_000)
  call(machine, 'failure')
  clock.tick(20_000)
  call(machine, 'failure')
  clock.tick(CUSTOM.windowMs - 20_000 - 1)
  t.same(machine.window, { calls: 2, failures: 2 }, 'kept until 30 s after the first call')
  clock.tick(1)
  t.same(machine.window, { calls: 0, failures: 0 }, 'cleared 30 s after the first call, though the second was 10 s ago')
  t.equal(machine.generation, 1, 'one window ended, not two')
})

test('a neutral call in closed is neither a call nor a failure: it does not count towards minimumCalls or the ratio', async (t) => {
  useFakeClock(t, ['Date'])
  const { machine, transitions } = made()
  calls(machine, ['failure', 'failure', 'neutral', 'neutral'])
  t.equal(machine.state, 'closed', '2 failures and 2 neutral calls: 2 calls < minimumCalls 3')
  t.same(machine.window, { calls: 2, failures: 2 }, 'the neutral calls were uncounted when they settled')
  const neutral = inFlight(machine)
  t.same(machine.window, { calls: 3, failures: 2 }, 'a call in flight counts until it proves neutral')
  machine.settle(neutral, 'neutral')
  t.same(machine.window, { calls: 2, failures: 2 })
  t.same(transitions, [], 'no state change')
  call(machine, 'failure')
  t.equal(machine.state, 'open', 'the third call that counts trips')
})

test('a window that holds only neutral calls has not started: it starts at the next call that counts', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const { machine } = made()
  call(machine, 'neutral')
  clock.tick(20_000)
  calls(machine, ['failure', 'failure'])
  clock.tick(CUSTOM.windowMs - 1)
  t.same(machine.window, { calls: 2, failures: 2 }, 'at 49 999 ms the window begun at 20 000 ms still holds its failures')
  t.equal(machine.generation, 0, 'no window ended at 30 000 ms')
  clock.tick(1)
  t.same(machine.window, { calls: 0, failures: 0 }, 'it ends at 50 000 ms')
})

test('a neutral call settled while another call is in flight keeps the window started', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const { machine } = made()
  const pending = inFlight(machine)
  call(machine, 'neutral')
  t.same(machine.window, { calls: 1, failures: 0 }, 'the call in flight still counts')
  clock.tick(CUSTOM.windowMs)
  t.same(machine.window, { calls: 0, failures: 0 }, 'the window begun at 0 ms ended at 30 000 ms')
  t.equal(machine.generation, 1, 'in a new generation')
  machine.settle(pending, 'failure', failed)
  t.same(machine.window, { calls: 0, failures: 0 }, 'and the late failure is not counted')
})

test('TestDefaultCircuitBreaker: open refuses every call until its period ends, then reads half-open in a new generation', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const { machine, transitions } = made()
  trip(machine)
  const openGeneration = machine.generation
  t.notOk(call(machine, 'success'), 'a success is refused')
  t.notOk(call(machine, 'failure'), 'a failure is refused')
  clock.tick(89_999)
  t.equal(machine.state, 'open', '1 ms before the end (gobreaker: pseudoSleep 59 s of 60)')
  t.equal(machine.openRemainingMs, 1)
  t.equal(machine.admit(), undefined, 'still refused')
  t.equal(machine.generation, openGeneration, 'refusals change no generation')
  clock.tick(1)
  t.equal(machine.state, 'half-open', 'the period ended')
  t.equal(machine.openRemainingMs, 0)
  t.equal(machine.generation, openGeneration + 1, 'a new generation')
  t.same(transitions.map(([from, to]) => [from, to]), [['closed', 'open'], ['open', 'half-open']])
  t.equal(transitions[1]?.[2], undefined, 'no error told for going half-open')
})

test('an open period that ended is half-open to the first call, without a state read first', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const { machine } = made()
  trip(machine)
  clock.tick(90_000)
  t.not(machine.admit(), undefined, 'admitted as a trial')
  t.equal(machine.halfOpenCalls, 1, 'holding a trial slot')
})

test('TestCustomCircuitBreaker: half-open admits halfOpenMaxCalls trials and refuses the next (over MaxRequests)', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const { machine } = made()
  trip(machine)
  clock.tick(90_000)
  const trials = [inFlight(machine), inFlight(machine)]
  t.equal(machine.halfOpenCalls, 2)
  trials.push(inFlight(machine))
  t.equal(machine.halfOpenCalls, 3, 'all three slots taken')
  t.ok(trials.every((generation) => generation === machine.generation), 'each trial carries the half-open generation')
  t.equal(machine.admit(), undefined, 'a fourth is refused')
  t.equal(machine.admit(), undefined, 'and a fifth')
  t.equal(machine.halfOpenCalls, 3, 'refusals take no slot')
  t.equal(machine.state, 'half-open', 'refusals change no state')
  t.same(machine.window, { calls: 0, failures: 0 }, 'a half-open machine shows no window')
})

test('TestCustomCircuitBreaker: halfOpenMaxCalls trial successes close it, into a fresh window', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const { machine, transitions } = made()
  trip(machine)
  clock.tick(90_000)
  const trials = [inFlight(machine), inFlight(machine), inFlight(machine)]
  machine.settle(trials[0] as number, 'success')
  machine.settle(trials[1] as number, 'success')
  t.equal(machine.state, 'half-open', '2 successes of 3')
  t.equal(machine.halfOpenCalls, 3, 'finished trials keep their slots: no fourth trial')
  t.equal(machine.admit(), undefined)
  machine.settle(trials[2] as number, 'success')
  t.equal(machine.state, 'closed', 'the third success closes it')
  t.same(transitions.at(-1), ['half-open', 'closed', undefined])
  t.equal(machine.halfOpenCalls, 0)
  t.same(machine.window, { calls: 0, failures: 0 }, 'a fresh window')
  calls(machine, ['failure', 'failure'])
  t.equal(machine.state, 'closed', 'minimumCalls applies again from zero')
})

test('sequential trials close it too: each success frees its slot for the next trial', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const { machine } = made()
  trip(machine)
  clock.tick(90_000)
  t.ok(call(machine, 'success'), 'trial 1')
  t.ok(call(machine, 'success'), 'trial 2')
  t.equal(machine.state, 'half-open')
  t.ok(call(machine, 'success'), 'trial 3')
  t.equal(machine.state, 'closed')
})

test('a failed trial re-opens it at once with the backoff\'s next step; the trials still in flight then change nothing; a trip from closed starts the backoff over', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const seen: Array<{ attempt: number, error: unknown }> = []
  const { machine, transitions } = made({ halfOpenAfter: recordingBackoff((attempt) => 1000 * attempt, seen) })
  const first = new Error('trip')
  const second = new Error('trial 1 failed')
  const third = new Error('trial 2 failed')
  calls(machine, ['failure', 'failure'])
  call(machine, 'failure', first)
  t.equal(machine.openRemainingMs, 1000, 'opening 1: 1 s')

  clock.tick(1000)
  const other = inFlight(machine)
  call(machine, 'failure', second)
  t.equal(machine.state, 'open', 'one failed trial re-opens it')
  t.same(transitions.at(-1), ['half-open', 'open', second])
  t.equal(machine.openRemainingMs, 2000, 'opening 2: 2 s')
  machine.settle(other, 'success')
  t.equal(machine.state, 'open', 'the other trial\'s success, from the old generation, changes nothing')

  clock.tick(2000)
  call(machine, 'failure', third)
  t.equal(machine.openRemainingMs, 3000, 'opening 3: 3 s')
  clock.tick(3000)
  calls(machine, ['success', 'success', 'success'])
  t.equal(machine.state, 'closed')
  trip(machine)
  t.equal(machine.openRemainingMs, 1000, 'a trip from closed: 1 s again')
  t.same(seen, [
    { attempt: 1, error: first },
    { attempt: 2, error: second },
    { attempt: 3, error: third },
    { attempt: 1, error: failed }
  ], 'the backoff was asked for steps 1, 2, 3, then 1 again, each with the failure that opened it')
})

test('a neutral trial frees its slot and changes nothing else', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const { machine, transitions } = made()
  trip(machine)
  clock.tick(90_000)
  const trials = [inFlight(machine), inFlight(machine), inFlight(machine)]
  const generation = trials[0] as number
  t.equal(machine.admit(), undefined, 'all slots taken')
  machine.settle(trials[0] as number, 'neutral')
  t.equal(machine.halfOpenCalls, 2, 'the slot is free')
  t.equal(machine.state, 'half-open')
  t.equal(machine.generation, generation, 'same generation')
  t.equal(transitions.length, 2, 'no transition')
  const again = machine.admit()
  t.equal(again, generation, 'the freed slot is granted again')
  machine.settle(trials[1] as number, 'success')
  machine.settle(trials[2] as number, 'success')
  t.equal(machine.state, 'half-open', 'two successes of three: the neutral one was no success')
  machine.settle(again as number, 'success')
  t.equal(machine.state, 'closed', 'the third success closes it')
})

test('neutral trials never close a half-open machine', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const { machine } = made()
  trip(machine)
  clock.tick(90_000)
  calls(machine, ['neutral', 'neutral', 'neutral', 'neutral'])
  t.equal(machine.state, 'half-open', 'four neutral trials prove nothing')
  t.equal(machine.halfOpenCalls, 0, 'and hold no slot')
})

test('a late result from a closed generation, arriving while half-open, neither re-opens it nor frees a slot', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const { machine } = made()
  const late = inFlight(machine)
  const lateNeutral = inFlight(machine)
  const lateSuccess = inFlight(machine)
  calls(machine, ['failure', 'failure', 'failure', 'failure', 'failure'])
  t.equal(machine.state, 'open', '5 failures in 8 calls')
  clock.tick(90_000)
  const trial = inFlight(machine)
  machine.settle(late, 'failure', failed)
  machine.settle(lateNeutral, 'neutral')
  machine.settle(lateSuccess, 'success')
  t.equal(machine.state, 'half-open', 'the late failure did not re-open it')
  t.equal(machine.halfOpenCalls, 1, 'the late neutral freed no slot')
  machine.settle(trial, 'success')
  t.equal(machine.state, 'half-open', 'one success of three: the late success was no trial')
})

test('isolate() holds a closed machine isolated, refusing every call for as long as any handle is held, then closes it into a fresh window', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const { machine, transitions } = made()
  const late = inFlight(machine)
  const first = machine.isolate()
  t.equal(machine.state, 'isolated')
  t.same(transitions, [['closed', 'isolated', undefined]])
  t.equal(machine.admit(), undefined, 'refused')
  t.equal(machine.openRemainingMs, 0, 'no known end')
  t.same(machine.window, { calls: 0, failures: 0 })
  t.equal(machine.halfOpenCalls, 0)
  const second = machine.isolate()
  t.equal(transitions.length, 1, 'a second handle is no new transition')
  clock.tick(24 * 3_600_000)
  t.equal(machine.state, 'isolated', 'time alone never releases it')
  machine.settle(late, 'failure', failed)
  t.equal(machine.state, 'isolated', 'a late result changes nothing')
  first.dispose()
  first.dispose()
  t.equal(machine.state, 'isolated', 'one handle of two released, even twice')
  second.dispose()
  t.equal(machine.state, 'closed', 'the last handle released')
  t.same(transitions.at(-1), ['isolated', 'closed', undefined])
  t.same(machine.window, { calls: 0, failures: 0 }, 'a fresh window')
  t.ok(call(machine, 'success'), 'calls are admitted again')
  second.dispose()
  const third = machine.isolate()
  first.dispose()
  t.equal(machine.state, 'isolated', 'handles from an earlier isolation release nothing')
  third.dispose()
  t.equal(machine.state, 'closed')
})

test('isolate() over an open machine: its period ending does not make it half-open, and release closes it', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const { machine, transitions } = made()
  trip(machine)
  const handle = machine.isolate()
  t.same(transitions.at(-1), ['open', 'isolated', undefined])
  clock.tick(90_000)
  t.equal(machine.state, 'isolated', 'the open period ended, still isolated')
  t.equal(machine.admit(), undefined, 'no trial')
  handle.dispose()
  t.equal(machine.state, 'closed', 'released into closed, not open or half-open')
})

test('isolate() over a half-open machine: the trials in flight change nothing', async (t) => {
  const clock = useFakeClock(t, ['Date'])
  const { machine, transitions } = made()
  trip(machine)
  clock.tick(90_000)
  const trials = [inFlight(machine), inFlight(machine)]
  const handle = machine.isolate()
  t.same(transitions.at(-1), ['half-open', 'isolated', undefined])
  machine.settle(trials[0] as number, 'failure', failed)
  machine.settle(trials[1] as number, 'success')
  t.equal(machine.state, 'isolated', 'a failed trial does not re-open an isolated machine')
  handle.dispose()
  t.equal(machine.state, 'closed')
})
