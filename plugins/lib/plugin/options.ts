/**
 * Option validation shared by every plugin. Each check throws one sentence:
 * `<plugin>: "<option>" must be <expectation> (got <value>)`.
 */

/** Renders a bad value for an error message, short and unambiguous. */
export function describeValue (value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'bigint') return `${value}n`
  if (typeof value === 'symbol') return value.toString()
  if (Array.isArray(value)) return 'an array'
  if (value !== null && typeof value === 'object') return 'an object'
  return String(value)
}

/** Builds the one-sentence `TypeError` every configuration mistake throws. */
export function optionError (plugin: string, option: string, expectation: string, value: unknown): TypeError {
  return new TypeError(`${plugin}: "${option}" must be ${expectation} (got ${describeValue(value)})`)
}

export function isPlainObject (value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

const LABEL_VALUE = /^[A-Za-z0-9_.:-]{1,64}$/

interface NumberRule {
  /** Smallest legal value, inclusive. */
  min?: number
  /** Largest legal value, inclusive. */
  max?: number
  /** Whole numbers only. */
  integer?: boolean
}

/**
 * The checks of one plugin, bound to its name so messages always say which
 * plugin refused the option. Every reader returns the default when the value
 * is `undefined` (never `||`: 0 and '' can be legal values).
 */
export class OptionReader {
  readonly plugin: string

  constructor (plugin: string) {
    this.plugin = plugin
  }

  fail (option: string, expectation: string, value: unknown): TypeError {
    return optionError(this.plugin, option, expectation, value)
  }

  /** The plugin options object itself: a plain object (or undefined), with no unknown keys. */
  object<T extends object> (option: string, value: unknown, knownKeys: readonly (keyof T & string)[]): Partial<T> {
    if (value === undefined) return {}
    if (!isPlainObject(value)) throw this.fail(option, 'an object', value)
    for (const key of Object.keys(value)) {
      if (!(knownKeys as readonly string[]).includes(key)) {
        throw new TypeError(`${this.plugin}: unknown option "${option === 'options' ? key : `${option}.${key}`}" (known options: ${knownKeys.join(', ')})`)
      }
    }
    return value as Partial<T>
  }

  number (option: string, value: unknown, fallback: number, rule: NumberRule = {}): number {
    if (value === undefined) return fallback
    const { min, max, integer = false } = rule
    const kind = integer ? 'an integer' : 'a number'
    let expectation = kind
    if (min !== undefined && max !== undefined) expectation = `${kind} from ${min} to ${max}`
    else if (min === 0) expectation = integer ? 'a non-negative integer' : 'a non-negative number'
    else if (min !== undefined) expectation = `${kind} >= ${min}`
    if (typeof value !== 'number' || !Number.isFinite(value) ||
        (integer && !Number.isInteger(value)) ||
        (min !== undefined && value < min) ||
        (max !== undefined && value > max)) {
      throw this.fail(option, expectation, value)
    }
    return value
  }

  boolean (option: string, value: unknown, fallback: boolean): boolean {
    if (value === undefined) return fallback
    if (typeof value !== 'boolean') throw this.fail(option, 'a boolean', value)
    return value
  }

  /** A string, optionally non-empty and matching a pattern described in words. */
  string (option: string, value: unknown, fallback: string, rule: { pattern?: RegExp, description?: string } = {}): string {
    if (value === undefined) return fallback
    const expectation = rule.description ?? 'a string'
    if (typeof value !== 'string' || (rule.pattern !== undefined && !rule.pattern.test(value))) {
      throw this.fail(option, expectation, value)
    }
    return value
  }

  /**
   * A name used as a metric label value (breaker names, operations): short and
   * plain, so labels stay bounded and readable.
   */
  labelValue (option: string, value: unknown, fallback: string): string {
    return this.string(option, value, fallback, { pattern: LABEL_VALUE, description: 'a name of 1 to 64 letters, digits, "_", ".", ":" or "-"' })
  }

  oneOf<const T extends string> (option: string, value: unknown, fallback: T, allowed: readonly T[]): T {
    if (value === undefined) return fallback
    if (!(allowed as readonly unknown[]).includes(value)) {
      throw this.fail(option, `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`, value)
    }
    return value as T
  }

  function<F extends (...args: never[]) => unknown> (option: string, value: unknown, fallback: F): F
  function<F extends (...args: never[]) => unknown> (option: string, value: unknown): F | undefined
  function<F extends (...args: never[]) => unknown> (option: string, value: unknown, fallback?: F): F | undefined {
    if (value === undefined) return fallback
    if (typeof value !== 'function') throw this.fail(option, 'a function', value)
    return value as F
  }
}
