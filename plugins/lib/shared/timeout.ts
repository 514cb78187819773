import { TimeoutError } from '../../errors.js'
import { onAbort } from './abort.js'

/** What every protected function receives. */
export interface CallContext {
  /** Aborted when the caller gives up or the call's timeout fires. */
  signal: AbortSignal
}

/**
 * Runs `fn` with a signal that follows `signal` and also aborts after
 * `timeoutMs`, in which case the call rejects with `FST_RESILIENCE_TIMEOUT`
 * at once, without waiting for `fn` to notice. Without `timeoutMs`, `fn`
 * simply receives `signal`.
 *
 * One timer and one listener per call, both released when the call settles:
 * much cheaper than composing cockatiel's `timeout()` policy on a hot path.
 */
export async function callWithTimeout<T> (fn: (context: CallContext) => PromiseLike<T> | T, signal: AbortSignal, timeoutMs: number | undefined): Promise<T> {
  if (timeoutMs === undefined) return await fn({ signal })
  const controller = new AbortController()
  const followCaller = (): void => controller.abort(signal.reason)
  let stopFollowing = (): void => {}
  if (signal.aborted) followCaller()
  else stopFollowing = onAbort(signal, followCaller)
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      const error = new TimeoutError(timeoutMs)
      controller.abort(error)
      reject(error)
    }, timeoutMs)
  })
  try {
    return await Promise.race([(async () => await fn({ signal: controller.signal }))(), expired])
  } finally {
    clearTimeout(timer)
    stopFollowing()
  }
}
