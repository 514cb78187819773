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

/** A retry context whose signal is built only if the function reads it. */
export class LazyContext implements RetryContext {
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
