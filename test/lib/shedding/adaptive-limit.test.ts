import { test } from 'tap'
import { ADAPTIVE_DEFAULTS, AdaptiveLimit } from '../../../plugins/lib/shedding/adaptive-limit.js'
import type { AdaptiveLimitSettings } from '../../../plugins/lib/shedding/adaptive-limit.js'

/**
 * A service simulated on a fake clock: `workers` requests served at once
 * (a connection pool), first come first served, each for about `serviceMs`
 * (plus or minus 25 %, from a seeded generator); its capacity is
 * workers / serviceMs requests per millisecond. Requests arrive open-loop at a
 * fixed rate, as in the benchmark; the limiter admits or sheds each one and
 * is told of each completion at its completion time. Probes come exactly
 * every `probeIntervalMs` (no jitter).
 */
interface Service { workers: number, serviceMs: number, failFastMs?: number }

interface Period { ok: number, shed: number, failed: number, rttSumMs: number, lowestLimit: number, highestLimit: number, limits: number[] }

class Simulation {
  nowMs = 0
  inFlight = 0
  readonly limiter: AdaptiveLimit
  /** Every limit the limiter ever held, checked against its bounds. */
  lowestLimit = Infinity
  highestLimit = 0
  private workersFreeAtMs: number[] = []
  private pending: Array<{ endMs: number, startedAtMs: number, inFlight: number, ok: boolean }> = []
  private seed = 42

  constructor (settings: Partial<AdaptiveLimitSettings> = {}) {
    this.limiter = new AdaptiveLimit({ ...ADAPTIVE_DEFAULTS, maxLimit: 1000, ...settings }, () => this.nowMs, () => 0)
    this.watch()
  }

  /** Runs `durationMs` of open-loop load at `ratePerMs` on `service`. */
  run (durationMs: number, ratePerMs: number, service: Service): Period {
    const period: Period = { ok: 0, shed: 0, failed: 0, rttSumMs: 0, lowestLimit: Infinity, highestLimit: 0, limits: [] }
    if (this.workersFreeAtMs.length !== service.workers) {
      this.workersFreeAtMs = Array.from({ length: service.workers }, (_, i) => this.workersFreeAtMs[i] ?? this.nowMs)
    }
    const endMs = this.nowMs + durationMs
    const everyMs = 1 / ratePerMs
    let nextMs = this.nowMs
    let nextSnapshotMs = this.nowMs
    while (nextMs < endMs) {
      this.complete(nextMs, period)
      this.nowMs = nextMs
      if (this.nowMs >= nextSnapshotMs) {
        period.limits.push(this.limiter.limit)
        nextSnapshotMs += 100
      }
      if (this.inFlight >= this.limiter.limit) {
        period.shed++
      } else {
        this.inFlight++
        this.admit(service)
      }
      nextMs += everyMs
    }
    this.complete(endMs, period)
    this.nowMs = endMs
    return period
  }

  private admit (service: Service): void {
    if (service.failFastMs !== undefined) {
      this.schedule({ endMs: this.nowMs + service.failFastMs, startedAtMs: this.nowMs, inFlight: this.inFlight, ok: false })
      return
    }
    let worker = 0
    for (let i = 1; i < this.workersFreeAtMs.length; i++) if ((this.workersFreeAtMs[i] as number) < (this.workersFreeAtMs[worker] as number)) worker = i
    const startMs = Math.max(this.nowMs, this.workersFreeAtMs[worker] as number)
    this.seed = (this.seed * 1103515245 + 12345) % 2147483648
    const endMs = startMs + service.serviceMs * (0.75 + 0.5 * this.seed / 2147483648)
    this.workersFreeAtMs[worker] = endMs
    this.schedule({ endMs, startedAtMs: this.nowMs, inFlight: this.inFlight, ok: true })
  }

  private schedule (completion: Simulation['pending'][number]): void {
    let at = this.pending.length
    while (at > 0 && (this.pending[at - 1] as typeof completion).endMs > completion.endMs) at--
    this.pending.splice(at, 0, completion)
  }

  private complete (untilMs: number, period: Period): void {
    while (this.pending.length > 0 && (this.pending[0] as Simulation['pending'][number]).endMs <= untilMs) {
      const done = this.pending.shift() as Simulation['pending'][number]
      this.nowMs = done.endMs
      this.inFlight--
      if (done.ok) {
        period.ok++
        period.rttSumMs += done.endMs - done.startedAtMs
      } else {
        period.failed++
      }
      this.limiter.record(done.startedAtMs, done.inFlight, done.ok)
      this.watch()
      period.lowestLimit = Math.min(period.lowestLimit, this.limiter.limit)
      period.highestLimit = Math.max(period.highestLimit, this.limiter.limit)
    }
  }

  private watch (): void {
    this.lowestLimit = Math.min(this.lowestLimit, this.limiter.limit)
    this.highestLimit = Math.max(this.highestLimit, this.limiter.limit)
  }
}

/** Requests per millisecond served at capacity. */
const capacity = (service: Service): number => service.workers / service.serviceMs
const goodput = (period: Period, durationMs: number): number => period.ok / durationMs
const meanRttMs = (period: Period): number => period.rttSumMs / period.ok

const POOL: Service = { workers: 10, serviceMs: 20 }

test('at 4x its capacity it converges on a limit near the pool size: goodput >= 95 % of capacity, latency within the tolerance', async (t) => {
  const simulation = new Simulation()
  simulation.run(10_000, 4 * capacity(POOL), POOL)
  const steady = simulation.run(10_000, 4 * capacity(POOL), POOL)
  t.ok(goodput(steady, 10_000) >= 0.95 * capacity(POOL), `goodput ${goodput(steady, 10_000)} req/ms`)
  t.ok(meanRttMs(steady) <= 1.75 * POOL.serviceMs, `mean RTT ${meanRttMs(steady)} ms`)
  t.ok(steady.lowestLimit >= POOL.workers && steady.highestLimit <= 2.5 * POOL.workers, `limit from ${steady.lowestLimit} to ${steady.highestLimit}`)
  t.equal(simulation.limiter.baselineRttMs !== undefined && Math.round(simulation.limiter.baselineRttMs / 5) * 5, POOL.serviceMs, 'the baseline is the unqueued service time')
})

test('at 90 % of capacity it sheds at most 1 %: only while measuring the baseline at minLimit, first and every probeIntervalMs', async (t) => {
  const simulation = new Simulation()
  const first = simulation.run(200, 0.9 * capacity(POOL), POOL)
  t.equal(first.limits[0], ADAPTIVE_DEFAULTS.minLimit, 'the first window runs at the floor')
  t.ok(first.shed > 0, `${first.shed} shed while measuring the baseline`)
  const between = simulation.run(29_000, 0.9 * capacity(POOL), POOL)
  t.equal(between.shed, 0, 'nothing shed between probes')
  const minute = simulation.run(60_000, 0.9 * capacity(POOL), POOL)
  t.ok(minute.limits.filter((limit) => limit === ADAPTIVE_DEFAULTS.minLimit).length >= 2, 'two probes in a minute')
  t.ok(minute.shed <= 0.01 * minute.ok, `${minute.shed} shed of ${minute.ok + minute.shed}`)
})

test('after a capacity drop (service time doubles) the limit leaves its floor: >= 90 % of the new capacity within 5 s', async (t) => {
  const simulation = new Simulation()
  simulation.run(10_000, 4 * capacity(POOL), POOL)
  const slower: Service = { workers: 10, serviceMs: 40 }
  simulation.run(5000, 4 * capacity(POOL), slower)
  const after = simulation.run(5000, 4 * capacity(POOL), slower)
  t.ok(goodput(after, 5000) >= 0.9 * capacity(slower), `goodput ${goodput(after, 5000)} req/ms of ${capacity(slower)}`)
  t.ok(after.lowestLimit >= slower.workers, `limit from ${after.lowestLimit} to ${after.highestLimit}`)
  t.ok(meanRttMs(after) <= 1.75 * slower.serviceMs, `mean RTT ${meanRttMs(after)} ms`)
})

test('after a capacity drop the limit does not walk down to its floor: from the second second on, every second serves >= 90 % of the new capacity', async (t) => {
  for (const load of [2, 4]) {
    const simulation = new Simulation()
    simulation.run(10_000, load * capacity(POOL), POOL)
    const slower: Service = { workers: 10, serviceMs: 40 }
    const seconds = Array.from({ length: 5 }, () => simulation.run(1000, load * capacity(POOL), slower))
    const shares = seconds.map((second) => goodput(second, 1000) / capacity(slower))
    t.ok(shares.slice(1).every((share) => share >= 0.9), `${load}x: goodput per second ${shares.map((share) => share.toFixed(2)).join(', ')} of the new capacity`)
    t.ok(Math.min(...seconds.map((second) => second.lowestLimit).slice(1)) >= slower.workers, `${load}x: the limit stays at or above the pool after the first second`)
  }
})

test('below half its limit a slower service does not move the limit (Gradient2\'s app-limited rule): nothing is refused', async (t) => {
  const simulation = new Simulation()
  const light = simulation.run(10_000, 0.3 * capacity(POOL), POOL)
  t.equal(simulation.limiter.limit, ADAPTIVE_DEFAULTS.initialLimit, `the limit holds at ${ADAPTIVE_DEFAULTS.initialLimit} while about 3 requests are in flight`)
  t.ok(light.shed <= 0.01 * light.ok, 'little refused (the first baseline window only)')
  // A heavier mix: each request now takes twice as long, about 6 in flight, still below half the limit.
  const heavier: Service = { workers: 10, serviceMs: 40 }
  const slow = simulation.run(10_000, 0.3 * capacity(POOL), heavier)
  t.equal(slow.shed, 0, `nothing refused (limits ${slow.lowestLimit}-${slow.highestLimit})`)
  t.equal(slow.lowestLimit, ADAPTIVE_DEFAULTS.initialLimit, 'the limit did not shrink')
})

test('a limit grown in a rush eases back towards 4 times the traffic once the rush is over, refusing nothing', async (t) => {
  const simulation = new Simulation()
  const big: Service = { workers: 40, serviceMs: 20 }
  simulation.run(10_000, 2 * capacity(big), big)
  const grown = simulation.limiter.limit
  t.ok(grown >= 40, `the limit grew with the big pool (${grown})`)
  // Light traffic: about 3 in flight.
  const quiet = simulation.run(5000, 0.15, POOL)
  t.equal(quiet.shed, 0, 'nothing refused while it eases')
  t.ok(simulation.limiter.limit <= 1.25 * ADAPTIVE_DEFAULTS.initialLimit, `back near max(initialLimit, 4 × in flight): ${simulation.limiter.limit}`)
  t.ok(simulation.limiter.limit >= ADAPTIVE_DEFAULTS.initialLimit, 'never below initialLimit')
})

test('just above capacity (1.05x) it refuses little more than the excess: re-measurements of a stale-looking baseline are spaced out', async (t) => {
  const simulation = new Simulation()
  const period = simulation.run(120_000, 1.05 * capacity(POOL), POOL)
  const refused = period.shed / (period.ok + period.shed)
  t.ok(refused <= 0.06, `${(100 * refused).toFixed(2)} % refused (the excess is 4.8 %)`)
})

test('after a capacity rise (service time halves) goodput follows within 5 s, and latency is back within the tolerance after the next probe', async (t) => {
  const simulation = new Simulation()
  simulation.run(10_000, 4 * capacity(POOL), POOL)
  const faster: Service = { workers: 10, serviceMs: 10 }
  simulation.run(5000, 4 * capacity(POOL), faster)
  const after = simulation.run(5000, 4 * capacity(POOL), faster)
  t.ok(goodput(after, 5000) >= 0.9 * capacity(faster), `goodput ${goodput(after, 5000)} req/ms of ${capacity(faster)}`)
  simulation.run(20_000, 4 * capacity(POOL), faster)
  const probed = simulation.run(5000, 4 * capacity(POOL), faster)
  t.ok(meanRttMs(probed) <= 1.75 * faster.serviceMs, `mean RTT ${meanRttMs(probed)} ms`)
  t.ok(goodput(probed, 5000) >= 0.9 * capacity(faster), `goodput ${goodput(probed, 5000)} req/ms of ${capacity(faster)}`)
})

test('after a capacity rise (the pool doubles) the limit grows with it', async (t) => {
  const simulation = new Simulation()
  simulation.run(10_000, 4 * capacity(POOL), POOL)
  const wider: Service = { workers: 20, serviceMs: 20 }
  simulation.run(5000, 4 * capacity(POOL), wider)
  const after = simulation.run(5000, 4 * capacity(POOL), wider)
  t.ok(goodput(after, 5000) >= 0.9 * capacity(wider), `goodput ${goodput(after, 5000)} req/ms of ${capacity(wider)}`)
  t.ok(after.lowestLimit >= wider.workers, `limit from ${after.lowestLimit} to ${after.highestLimit}`)
})

test('a burst of fast failures does not move the limit or the baseline, and the limit holds afterwards', async (t) => {
  const simulation = new Simulation()
  simulation.run(10_000, 4 * capacity(POOL), POOL)
  const limit = simulation.limiter.limit
  const baseline = simulation.limiter.baselineRttMs
  const failing = simulation.run(2000, 4 * capacity(POOL), { ...POOL, failFastMs: 1 })
  t.ok(failing.failed > 1000, `${failing.failed} fast failures`)
  t.equal(simulation.limiter.limit, limit, 'the limit did not move')
  t.equal(simulation.limiter.baselineRttMs, baseline, 'the baseline did not move')
  const after = simulation.run(3000, 4 * capacity(POOL), POOL)
  t.ok(after.lowestLimit >= POOL.workers, `limit from ${after.lowestLimit} to ${after.highestLimit}`)
  t.ok(goodput(after, 3000) >= 0.9 * capacity(POOL), `goodput ${goodput(after, 3000)} req/ms`)
})

test('the limit never exceeds maxLimit nor goes below minLimit, and reaches both', async (t) => {
  const simulation = new Simulation({ minLimit: 3, maxLimit: 50, initialLimit: 20 })
  // Fast and wide: no queueing, always busy enough to grow.
  simulation.run(5000, 20, { workers: 1000, serviceMs: 5 })
  t.equal(simulation.limiter.limit, 50)
  // Ten times slower and narrow: 50 in flight queue for 500 ms, far beyond the baseline.
  simulation.run(10_000, 1, { workers: 5, serviceMs: 50 })
  t.equal(simulation.highestLimit, 50)
  t.equal(simulation.lowestLimit, 3)
})

test('a service using less than half the limit does not grow it (app-limited), and without samples nothing moves', async (t) => {
  const simulation = new Simulation({ initialLimit: 40 })
  const idle = simulation.run(5000, 0.1, { workers: 100, serviceMs: 20 })
  t.ok(idle.ok > 400)
  t.equal(simulation.limiter.limit, 40, 'two requests in flight do not open up the limit')
  simulation.run(5000, 0.0001, POOL)
  t.equal(simulation.limiter.limit, 40, 'no window closed without enough samples')
})

test('the first window sets the baseline at minLimit; windows close only after windowMs and minSamples; a zero RTT counts as unqueued', async (t) => {
  let nowMs = 0
  const limiter = new AdaptiveLimit({ ...ADAPTIVE_DEFAULTS, maxLimit: 100, minSamples: 3, windowMs: 100 }, () => nowMs)
  t.equal(limiter.limit, 5, 'measuring the baseline at the floor')
  nowMs = 200
  t.equal(limiter.record(180, 5, true), false, 'one sample is not a window')
  t.equal(limiter.record(180, 5, true), false)
  t.equal(limiter.record(180, 5, true), true, 'the third sample closes it: back to initialLimit')
  t.equal(limiter.baselineRttMs, 20)
  t.equal(limiter.limit, 20)
  nowMs = 250
  for (let i = 0; i < 5; i++) t.equal(limiter.record(250, 20, true), false, 'within windowMs of the last window')
  nowMs = 300
  t.equal(limiter.record(300, 20, true), true, 'no queueing: grows by sqrt(20)')
  t.equal(limiter.limit, 24)
  t.equal(limiter.baselineRttMs, 0)
  t.equal(limiter.record(0, 24, false), false, 'failures are no samples')
})

test('an initial limit outside the bounds is clamped once the baseline is measured', async (t) => {
  let nowMs = 0
  const above = new AdaptiveLimit({ ...ADAPTIVE_DEFAULTS, maxLimit: 10, initialLimit: 20, minSamples: 1, windowMs: 1 }, () => nowMs)
  const below = new AdaptiveLimit({ ...ADAPTIVE_DEFAULTS, maxLimit: 10, minLimit: 8, initialLimit: 2, minSamples: 1, windowMs: 1 }, () => nowMs)
  nowMs = 10
  above.record(5, 1, true)
  below.record(5, 1, true)
  t.equal(above.limit, 10)
  t.equal(below.limit, 8)
})
