/** What the retried function receives. */
export interface RetryContext {
  /** 0 for the first call, then 1, 2, ... for each retry. */
  attempt: number
  /** Aborted when the caller gives up. */
  signal: AbortSignal
}

/** A function run with retries; it may return a value or a promise. */
export type RetryableFunction<T> = (context: RetryContext) => PromiseLike<T> | T

/**
 * A signal built on first use, at most once: the route pipeline's client
 * signal, which a call that succeeds at once never needs.
 */
export class LazySignal {
  private built: AbortSignal | undefined
  private readonly build: () => AbortSignal

  constructor (build: () => AbortSignal) {
    this.build = build
  }

  /** The signal, built now if nothing has asked for it yet. */
  get (): AbortSignal {
    return (this.built ??= this.build())
  }

  /** The signal if something has asked for it, else undefined. */
  peek (): AbortSignal | undefined {
    return this.built
  }
}

/** A given signal, or one built on first use. */
export type SignalSource = AbortSignal | LazySignal

/** The signal of `source` if it exists yet (a lazy one once built). */
export function signalSoFar (source: SignalSource): AbortSignal | undefined {
  return source instanceof LazySignal ? source.peek() : source
}

/** The signal of `source`, built now if it is lazy and not built yet. */
export function signalOf (source: SignalSource): AbortSignal {
  return source instanceof LazySignal ? source.get() : source
}

/** A retry context whose signal is built only if the function reads it. */
class LazyContext implements RetryContext {
  readonly attempt: number
  private readonly lazy: LazySignal

  constructor (attempt: number, lazy: LazySignal) {
    this.attempt = attempt
    this.lazy = lazy
  }

  get signal (): AbortSignal {
    return this.lazy.get()
  }
}

/** The context of attempt `attempt`: a plain object once the signal exists. */
export function contextOf (attempt: number, source: SignalSource): RetryContext {
  const signal = signalSoFar(source)
  return signal === undefined ? new LazyContext(attempt, source as LazySignal) : { attempt, signal }
}
