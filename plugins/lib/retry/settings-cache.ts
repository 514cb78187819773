import type { RetrySettings } from './retrier.js'

/** Entries kept before the cache starts afresh: call sites use a handful of shapes. */
const MAX_ENTRIES = 256

/**
 * Resolved settings of `app.retry(fn, options)` calls, looked up by what the
 * options say rather than by the object, since most call sites pass a fresh
 * literal (`{ maxRetries: 2, signal }`) each time: resolving and validating
 * them anew costs several times the retry itself. `signal` is per call and not
 * part of the key; functions (`isRetryable`) are told apart by identity.
 */
export class RetrySettingsCache {
  private readonly entries = new Map<string, RetrySettings>()
  private readonly functionIds = new WeakMap<object, number>()
  private nextFunctionId = 0

  /** The settings cached for `options`, else those `resolve` returns (then cached). */
  get (options: object, resolve: () => RetrySettings): RetrySettings {
    const key = this.keyOf(options)
    if (key === undefined) return resolve()
    let settings = this.entries.get(key)
    if (settings === undefined) {
      settings = resolve()
      if (this.entries.size >= MAX_ENTRIES) this.entries.clear()
      this.entries.set(key, settings)
    }
    return settings
  }

  /** A string naming every option but `signal`; undefined for values it cannot name (left to validation). */
  private keyOf (options: object): string | undefined {
    let key = ''
    // for...in over an object literal: no array of entries per call.
    for (const name in options) {
      if (name === 'signal' || !Object.hasOwn(options, name)) continue
      const value = (options as Record<string, unknown>)[name]
      // Numbers, the usual case, need no call.
      const part = typeof value === 'number' ? value : this.partOf(value)
      if (part === undefined) return undefined
      key += name + '=' + String(part) + ';'
    }
    return key
  }

  private partOf (value: unknown): string | undefined {
    switch (typeof value) {
      case 'boolean': case 'undefined': return String(value)
      case 'string': return JSON.stringify(value)
      case 'function': return `#${this.idOf(value)}`
      case 'object': {
        if (value === null || Object.getPrototypeOf(value) !== Object.prototype) return undefined
        // A plain object (the budget): its fields, in order.
        let nested = '{'
        for (const [name, field] of Object.entries(value)) {
          if (typeof field !== 'number' && typeof field !== 'boolean') return undefined
          nested += `${name}=${String(field)};`
        }
        return `${nested}}`
      }
      default: return undefined
    }
  }

  private idOf (fn: object): number {
    let id = this.functionIds.get(fn)
    if (id === undefined) {
      id = this.nextFunctionId++
      this.functionIds.set(fn, id)
    }
    return id
  }
}
