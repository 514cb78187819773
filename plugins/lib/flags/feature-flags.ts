import { OptionReader, isPlainObject } from '../plugin/options.js'
import { rolloutBucket } from './stable-hash.js'

/** A flag is on, off, or on for a stable share of keys (0 to 100 %). */
export type FlagValue = boolean | { percentage: number }

/** Called after a flag changed, locally or from another instance. */
export type FlagChangeListener = (name: string, value: FlagValue, previous: FlagValue | undefined) => void

/** Where flag changes are saved and shared; the memory store is the absence of one. */
export interface FlagStore {
  set: (name: string, value: FlagValue) => Promise<void>
}

export const FLAG_NAME = /^[a-z][a-z0-9_.-]{0,63}$/
const FLAG_NAME_RULE = { pattern: FLAG_NAME, description: 'a flag name: a lowercase letter, then up to 63 of a-z, 0-9, "_", "." or "-"' }

/** Checks a flag value; returns it or throws a TypeError naming `option`. */
export function checkFlagValue (read: OptionReader, option: string, value: unknown): FlagValue {
  if (typeof value === 'boolean') return value
  if (isPlainObject(value) && Object.keys(value).length === 1) {
    const { percentage } = value as { percentage?: unknown }
    if (typeof percentage === 'number' && Number.isFinite(percentage) && percentage >= 0 && percentage <= 100) return { percentage }
  }
  throw read.fail(option, 'true, false or { percentage: 0-100 }', value)
}

export function checkFlagName (read: OptionReader, option: string, name: unknown): string {
  if (name === undefined) throw read.fail(option, FLAG_NAME_RULE.description, name)
  return read.string(option, name, '', FLAG_NAME_RULE)
}

/** Same value? (percentage objects compared by their number) */
export function sameFlagValue (a: FlagValue | undefined, b: FlagValue | undefined): boolean {
  if (typeof a === 'object' && typeof b === 'object') return a.percentage === b.percentage
  return a === b
}

/** The share of traffic a value enables, 0 to 1 (the `feature_flag_enabled` gauge). */
export function enabledShare (value: FlagValue): number {
  if (typeof value === 'boolean') return value ? 1 : 0
  return value.percentage / 100
}

/**
 * `app.flags`: feature flags read synchronously on the hot path, changed
 * asynchronously through the store (Redis when configured), and updated from
 * other instances as their changes arrive.
 */
export class FeatureFlags {
  /** Whether a flag nobody has set is enabled. */
  readonly defaultEnabled: boolean
  private readonly values = new Map<string, FlagValue>()
  private readonly listeners = new Set<FlagChangeListener>()
  private readonly read: OptionReader
  private readonly reportListenerError: (error: unknown) => void
  private store: FlagStore | undefined

  constructor (read: OptionReader, defaultEnabled: boolean, initial: Record<string, FlagValue>, reportListenerError: (error: unknown) => void) {
    this.read = read
    this.reportListenerError = reportListenerError
    this.defaultEnabled = defaultEnabled
    for (const [name, value] of Object.entries(initial)) this.values.set(name, value)
  }

  /**
   * Synchronous and allocation-free. An unknown flag follows `defaultEnabled`.
   * A percentage flag is enabled for a stable share of `context.key`s (the same
   * key always gets the same answer); without a key it is enabled only at 100 %.
   */
  isEnabled (name: string, context?: { key?: string }): boolean {
    const value = this.values.get(name)
    if (value === undefined) return this.defaultEnabled
    if (typeof value === 'boolean') return value
    const { percentage } = value
    if (percentage >= 100) return true
    const key = context?.key
    if (percentage <= 0 || key === undefined) return false
    return rolloutBucket(name, key) < percentage * 100
  }

  /** The flag's value, or undefined if nobody set it. */
  get (name: string): FlagValue | undefined {
    return this.values.get(name)
  }

  /**
   * Saves a value; with the Redis store every instance applies it. Rejects with
   * `FST_RESILIENCE_FLAG_STORE_UNAVAILABLE` when Redis is unreachable, refuses
   * the change or does not confirm it in time; a rejected change is fenced so
   * Redis never applies it later (one residual case: applied just before its
   * deadline with the answer lost; every instance then converges on what Redis
   * holds; see the README).
   */
  async set (name: string, value: FlagValue): Promise<void> {
    checkFlagName(this.read, 'name', name)
    const checked = checkFlagValue(this.read, 'value', value)
    await this.store?.set(name, checked)
    this.apply(name, checked)
  }

  async enable (name: string): Promise<void> {
    await this.set(name, true)
  }

  async disable (name: string): Promise<void> {
    await this.set(name, false)
  }

  /** Every flag that has a value, by name. */
  list (): Record<string, FlagValue> {
    return Object.fromEntries(this.values)
  }

  /** Calls `listener` after every change of a value; `dispose()` stops it. */
  onChange (listener: FlagChangeListener): { dispose: () => void } {
    this.listeners.add(listener)
    return { dispose: () => { this.listeners.delete(listener) } }
  }

  /** Connects the store that saves and shares changes (plugin use). */
  useStore (store: FlagStore): void {
    this.store = store
  }

  /** Applies a value (from `set` or from another instance); listeners hear of real changes only. */
  apply (name: string, value: FlagValue): void {
    const previous = this.values.get(name)
    if (sameFlagValue(previous, value)) return
    this.values.set(name, value)
    for (const listener of this.listeners) {
      // A failing listener must not stop the others, nor crash a Redis message handler.
      try {
        listener(name, value, previous)
      } catch (error) {
        this.reportListenerError(error)
      }
    }
  }
}
