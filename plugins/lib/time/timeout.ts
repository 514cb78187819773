import { TimeoutError } from '../../errors.js'
import { neverAborted, onAbort } from './abort.js'
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
 * Decides how a call whose deadline passed settles: `{ settled: value }`
 * resolves it with `value` (the route pipeline's handler had already replied);
 * `undefined` rejects it with the timeout error.
 */
export type OnExpire<T> = (error: InstanceType<typeof TimeoutError>) => { settled: T } | undefined

/**
 * Runs `fn` with a signal that follows `signal` and also aborts when its
 * deadline (of the `deadlines` queue) passes, in which case the call rejects
 * with `FST_RESILIENCE_TIMEOUT` at once, without waiting for `fn` to notice
 * (unless `onExpire` settles it otherwise). Without `deadlines`, `fn` simply
 * receives `signal`.
 *
 * The suite's one way to bound a wait: the breaker's `timeoutMs`, the
 * fallback's tiers, the route pipeline's per-attempt timeout and the Redis
 * stores' commands all run here, on {@link Deadlines} queues (one timer per
 * duration rather than a timer per call) measured on one monotonic clock.
 */
export function callWithTimeout<T> (fn: (context: CallContext) => PromiseLike<T> | T, signal: AbortSignal, deadlines: Deadlines | undefined, onExpire?: OnExpire<T>): Promise<T> {
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
      const outcome = onExpire?.(error)
      if (outcome !== undefined) {
        context.release()
        resolve(outcome.settled)
        return
      }
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

/**
 * Settles like `promise`, or rejects with `FST_RESILIENCE_TIMEOUT` once a
 * deadline of `deadlines` passes (never before): for waits on a server.
 */
export function within<T> (promise: PromiseLike<T>, deadlines: Deadlines): Promise<T> {
  return callWithTimeout(() => promise, neverAborted, deadlines)
}
