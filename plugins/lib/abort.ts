/**
 * Waits `ms` milliseconds, or rejects with the signal's reason as soon as it
 * aborts; the timer and listener are released either way. Cockatiel's own
 * retry sleep does not listen to the signal, hence this.
 */
export async function sleep (ms: number, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted()
  if (ms <= 0) return
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer)
      reject(signal.reason)
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

/** Settles like `promise`, or rejects with the signal's reason as soon as it aborts. */
export async function untilAborted<T> (promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => {})
    throw signal.reason
  }
  let onAbort: (() => void) | undefined
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
  })
  try {
    return await Promise.race([promise, aborted])
  } finally {
    signal.removeEventListener('abort', onAbort as () => void)
  }
}

/** A signal that never aborts, for callers that pass none. */
export const neverAborted: AbortSignal = new AbortController().signal
