import { TimeoutError } from '../../errors.js'
import { onAbort } from './abort.js'
import type { Deadlines } from './deadlines.js'

/** What every protected function receives. */
export interface CallContext {
  /** Aborted when the caller gives up or the call's timeout fires. */
  signal: AbortSignal
}

/**
 * The context of a call with a deadline. Its signal is made only if the
 * function asks for it (an AbortController per call would be most of the cost of
 * a timeout); asked for after the deadline passed, it is born aborted.
 */
class TimedContext implements CallContext {
  private readonly caller: AbortSignal
  private controller: AbortController | undefined
  private expiredWith: Error | undefined
  private stopFollowing: (() => void) | undefined

  constructor (caller: AbortSignal) {
    this.caller = caller
  }

  get signal (): AbortSignal {
    if (this.controller === undefined) {
      const controller = this.controller = new AbortController()
      if (this.expiredWith !== undefined) controller.abort(this.expiredWith)
      else if (this.caller.aborted) controller.abort(this.caller.reason)
      else this.stopFollowing = onAbort(this.caller, () => controller.abort(this.caller.reason))
    }
    return this.controller.signal
  }

  expire (error: Error): void {
    this.expiredWith = error
    this.release()
    this.controller?.abort(error)
  }

  /** Stops following the caller (the call has settled). */
  release (): void {
    this.stopFollowing?.()
    this.stopFollowing = undefined
  }
}

/**
 * Runs `fn` with a signal that follows `signal` and also aborts when its
 * deadline (of the `deadlines` queue) passes, in which case the call rejects
 * with `FST_RESILIENCE_TIMEOUT` at once, without waiting for `fn` to notice.
 * Without `deadlines`, `fn` simply receives `signal`.
 *
 * The suite's one timeout mechanism: the breaker's `timeoutMs`, the fallback's
 * tiers, the flag store's commands and the route pipeline's per-attempt
 * timeout all run on {@link Deadlines} queues, one timer per duration rather
 * than a timer per call.
 */
export function callWithTimeout<T> (fn: (context: CallContext) => PromiseLike<T> | T, signal: AbortSignal, deadlines: Deadlines | undefined): Promise<T> {
  if (deadlines === undefined) {
    try {
      return Promise.resolve(fn({ signal }))
    } catch (error) {
      return Promise.reject(error)
    }
  }
  const context = new TimedContext(signal)
  return new Promise<T>((resolve, reject) => {
    const deadline = deadlines.start(() => {
      const error = new TimeoutError(deadlines.ms)
      context.expire(error)
      reject(error)
    })
    let running: PromiseLike<T> | T
    try {
      running = fn(context)
    } catch (error) {
      running = Promise.reject(error)
    }
    Promise.resolve(running).then((value) => {
      deadline.cancel()
      context.release()
      resolve(value)
    }, (error: unknown) => {
      deadline.cancel()
      context.release()
      reject(error)
    })
  })
}
