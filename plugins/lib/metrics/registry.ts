import type { FastifyInstance } from 'fastify'
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { CounterConfiguration, GaugeConfiguration, HistogramConfiguration, Metric } from 'prom-client'
import { TalliedHistogram } from './tallied-histogram.js'

/** The app's registry decorator, read here without the metrics plugin's type declaration (which sits above lib/). */
function registryOf (app: FastifyInstance): Registry {
  return (app as FastifyInstance & { metricsRegistry: Registry }).metricsRegistry
}

/** The metric name prefix chosen for each registry (see the metrics plugin's `prefix`). */
const prefixes = new WeakMap<Registry, string>()

/**
 * Returns the app's metrics registry, creating it (and the `metricsRegistry`
 * decorator) on first use. Every plugin calls this, so whichever plugin is
 * registered first creates the one registry the others share.
 */
export function useMetricsRegistry (app: FastifyInstance): Registry {
  if (!app.hasDecorator('metricsRegistry')) {
    app.decorate('metricsRegistry', new Registry())
  }
  return registryOf(app)
}

/**
 * Installs a user-chosen registry and/or prefix. Must run before any metric is
 * created, so it refuses when another plugin already created the registry.
 */
export function provideMetricsRegistry (app: FastifyInstance, plugin: string, registry: Registry | undefined, prefix: string): Registry {
  if (app.hasDecorator('metricsRegistry')) {
    if (registry !== undefined && registry !== registryOf(app)) {
      throw new TypeError(`${plugin}: "registry" cannot be set because another fastify-resilience plugin was registered first and already created the app's registry; register ${plugin} first`)
    }
    if (prefix !== (prefixes.get(registryOf(app)) ?? '')) {
      throw new TypeError(`${plugin}: "prefix" cannot be set to ${JSON.stringify(prefix)} because another fastify-resilience plugin was registered first and already named its metrics; register ${plugin} first`)
    }
    return registryOf(app)
  }
  const chosen = registry ?? new Registry()
  if (prefix !== '') prefixes.set(chosen, prefix)
  app.decorate('metricsRegistry', chosen)
  return chosen
}

/** The prefix applied to every metric name in this registry ('' when none). */
export function metricPrefix (registry: Registry): string {
  return prefixes.get(registry) ?? ''
}

function getOrCreate<M extends Metric> (registry: Registry, name: string, kind: new (config: never) => M, create: (fullName: string) => M): M {
  const fullName = metricPrefix(registry) + name
  const existing = registry.getSingleMetric(fullName)
  if (existing === undefined) return create(fullName)
  if (!(existing instanceof kind)) {
    throw new TypeError(`fastify-resilience: metric "${fullName}" already exists in the registry with another type`)
  }
  return existing
}

type Config<C> = Omit<C, 'name' | 'registers'>

/** The counter `name` (prefix applied) of this registry, created on first use. */
export function counter<L extends string> (registry: Registry, name: string, config: Config<CounterConfiguration<L>>): Counter<L> {
  return getOrCreate(registry, name, Counter, (fullName) => new Counter<L>({ ...config, name: fullName, registers: [registry] })) as Counter<L>
}

/** The gauge `name` (prefix applied) of this registry, created on first use. */
export function gauge<L extends string> (registry: Registry, name: string, config: Config<GaugeConfiguration<L>>): Gauge<L> {
  return getOrCreate(registry, name, Gauge, (fullName) => new Gauge<L>({ ...config, name: fullName, registers: [registry] })) as Gauge<L>
}

/** The histogram `name` (prefix applied) of this registry, created on first use. */
export function histogram<L extends string> (registry: Registry, name: string, config: Config<HistogramConfiguration<L>>): Histogram<L> {
  return getOrCreate(registry, name, Histogram, (fullName) => new Histogram<L>({ ...config, name: fullName, registers: [registry] })) as Histogram<L>
}

/**
 * The histogram `name` (prefix applied) whose hot-path observations go through
 * tallies (see {@link TalliedHistogram}), created on first use.
 */
export function talliedHistogram<L extends string> (registry: Registry, name: string, config: Config<HistogramConfiguration<L>> & { buckets: number[], labelNames: readonly L[] }): TalliedHistogram<L> {
  return getOrCreate(registry, name, TalliedHistogram, (fullName) => new TalliedHistogram<L>({ ...config, name: fullName, registers: [registry] })) as TalliedHistogram<L>
}

type Source<M> = (metric: M) => void
const metricSources = new WeakMap<object, Set<Source<never>>>()

/**
 * Adds `source` to the collectors of `metric`; `fresh` is the set its
 * `collect` reads if the metric was created just now. Several apps sharing one
 * user-supplied registry each add their own source.
 */
function addSource<M extends object> (metric: M, fresh: Set<Source<M>>, source: Source<M>): () => void {
  let sources = metricSources.get(metric) as Set<Source<M>> | undefined
  if (sources === undefined) {
    sources = fresh
    metricSources.set(metric, sources as Set<Source<never>>)
  }
  const added = sources
  added.add(source)
  return () => { added.delete(source) }
}

/**
 * A gauge whose values are computed at scrape time by `source` (prom-client's
 * `collect`), so it is always current without a timer. Returns a function that
 * removes the source (call it in `onClose`).
 */
export function collectedGauge<L extends string> (registry: Registry, name: string, config: Config<GaugeConfiguration<L>>, source: Source<Gauge<L>>): () => void {
  const fresh = new Set<Source<Gauge<L>>>()
  const metric = gauge<L>(registry, name, {
    ...config,
    collect () {
      for (const collect of fresh) collect(this)
    }
  })
  return addSource(metric, fresh, source)
}

/** Counts of one label set, added to on hot paths with plain arithmetic. */
export interface Tally<L extends string> {
  readonly labels: Partial<Record<L, string>>
  count: number
  /** What the counter has been given so far. */
  reported: number
}

/**
 * A counter fed from tallies at scrape time: hot paths do `tally.count++`
 * (a few nanoseconds) instead of prom-client's `inc` with labels (hundreds),
 * and each scrape adds what was counted since the last one. Returns a function
 * that makes a tally for a label set, and one that stops collecting.
 */
export function talliedCounter<L extends string> (registry: Registry, name: string, config: Config<CounterConfiguration<L>>): { tally: (labels: Partial<Record<L, string>>) => Tally<L>, stop: () => void } {
  const fresh = new Set<Source<Counter<L>>>()
  const metric = counter<L>(registry, name, {
    ...config,
    collect () {
      for (const collect of fresh) collect(this)
    }
  })
  const tallies: Array<Tally<L>> = []
  const stop = addSource(metric, fresh, (target) => {
    for (const tally of tallies) {
      const delta = tally.count - tally.reported
      if (delta > 0) target.inc(tally.labels, delta)
      tally.reported = tally.count
    }
  })
  return {
    tally (labels) {
      const tally = { labels, count: 0, reported: 0 }
      tallies.push(tally)
      return tally
    },
    stop
  }
}
