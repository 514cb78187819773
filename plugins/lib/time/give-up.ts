import { performance } from 'node:perf_hooks'
import { TimeoutError } from '../../errors.js'

/**
 * Settles like `promise`, or rejects with `FST_RESILIENCE_TIMEOUT` once the
 * monotonic clock reaches `giveUpAt`. A caller may derive a fence from
 * `giveUpAt` (the flag store does), so giving up must never come before it: a
 * timer that fires early is re-armed.
 */
export async function beforeGiveUp<T> (promise: PromiseLike<T>, giveUpAt: number, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_resolve, reject) => {
    const check = (): void => {
      const leftMs = giveUpAt - performance.now()
      if (leftMs <= 0) reject(new TimeoutError(timeoutMs))
      else timer = setTimeout(check, Math.ceil(leftMs))
    }
    check()
  })
  try {
    return await Promise.race([promise, expired])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Settles like `promise`, or rejects with `FST_RESILIENCE_TIMEOUT` after
 * `timeoutMs` on the monotonic clock: for waits on a server, which a test's
 * stopped `Date` must not stretch.
 */
export async function withinMs<T> (promise: PromiseLike<T>, timeoutMs: number): Promise<T> {
  return await beforeGiveUp(promise, performance.now() + timeoutMs, timeoutMs)
}
