import type { FastifyInstance } from 'fastify'
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { CounterConfiguration, GaugeConfiguration, HistogramConfiguration, Metric } from 'prom-client'
// The `app.metricsRegistry` decorator type is declared next to the metrics plugin.
import type {} from '../metrics.js'

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
  return app.metricsRegistry
}

/**
 * Installs a user-chosen registry and/or prefix. Must run before any metric is
 * created, so it refuses when another plugin already created the registry.
 */
export function provideMetricsRegistry (app: FastifyInstance, plugin: string, registry: Registry | undefined, prefix: string): Registry {
  if (app.hasDecorator('metricsRegistry')) {
    if (registry !== undefined && registry !== app.metricsRegistry) {
      throw new TypeError(`${plugin}: "registry" cannot be set because another fastify-resilience plugin was registered first and already created the app's registry; register ${plugin} first`)
    }
    if (prefix !== (prefixes.get(app.metricsRegistry) ?? '')) {
      throw new TypeError(`${plugin}: "prefix" cannot be set to ${JSON.stringify(prefix)} because another fastify-resilience plugin was registered first and already named its metrics; register ${plugin} first`)
    }
    return app.metricsRegistry
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

type GaugeSource<L extends string> = (gauge: Gauge<L>) => void
const gaugeSources = new WeakMap<Gauge, Set<GaugeSource<string>>>()

/**
 * A gauge whose values are computed at scrape time by `source` (prom-client's
 * `collect`), so it is always current without a timer. Several apps sharing one
 * user-supplied registry each add their own source. Returns a function that
 * removes the source (call it in `onClose`).
 */
export function collectedGauge<L extends string> (registry: Registry, name: string, config: Config<GaugeConfiguration<L>>, source: GaugeSource<L>): () => void {
  const fresh = new Set<GaugeSource<string>>()
  const metric = gauge<L>(registry, name, {
    ...config,
    collect () {
      for (const collect of fresh) collect(this as Gauge)
    }
  }) as Gauge
  let sources = gaugeSources.get(metric)
  if (sources === undefined) {
    // Created just now, with `fresh` as its collector's list.
    sources = fresh
    gaugeSources.set(metric, sources)
  }
  const added = sources
  added.add(source as GaugeSource<string>)
  return () => { added.delete(source as GaugeSource<string>) }
}
