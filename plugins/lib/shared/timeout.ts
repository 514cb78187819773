import { TimeoutError } from '../../errors.js'
import { onAbort } from './abort.js'
import type { Deadlines } from './deadlines.js'

/** What every protected function receives. */
export interface CallContext {
  /** Aborted when the caller gives up or the call's timeout fires. */
  signal: AbortSignal
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
  const controller = new AbortController()
  const followCaller = (): void => controller.abort(signal.reason)
  let stopFollowing = (): void => {}
  if (signal.aborted) followCaller()
  else stopFollowing = onAbort(signal, followCaller)
  return new Promise<T>((resolve, reject) => {
    const deadline = deadlines.start(() => {
      stopFollowing()
      const error = new TimeoutError(deadlines.ms)
      controller.abort(error)
      reject(error)
    })
    const settle = (): void => {
      deadline.cancel()
      stopFollowing()
    }
    let running: PromiseLike<T> | T
    try {
      running = fn({ signal: controller.signal })
    } catch (error) {
      running = Promise.reject(error)
    }
    Promise.resolve(running).then((value) => {
      settle()
      resolve(value)
    }, (error: unknown) => {
      settle()
      reject(error)
    })
  })
}
