/** A signal that never aborts, for callers that pass none. */
export const neverAborted: AbortSignal = new AbortController().signal

const nothingToRemove = (): void => {}

/**
 * Calls `listener` once when `signal` aborts; returns what removes it. Never
 * listens to {@link neverAborted}: every call without a signal shares it, so
 * a listener per sleeping retry or running call would pile up on it (Node
 * warns of a leak past 10) although it can never fire.
 */
export function onAbort (signal: AbortSignal, listener: () => void): () => void {
  if (signal === neverAborted) return nothingToRemove
  signal.addEventListener('abort', listener, { once: true })
  return () => signal.removeEventListener('abort', listener)
}

/**
 * Waits `ms` milliseconds, or rejects with the signal's reason as soon as it
 * aborts; the timer and listener are released either way. Cockatiel's own
 * retry sleep does not listen to the signal, hence this.
 */
export async function sleep (ms: number, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted()
  if (ms <= 0) return
  await new Promise<void>((resolve, reject) => {
    const stopListening = onAbort(signal, () => {
      clearTimeout(timer)
      reject(signal.reason)
    })
    const timer = setTimeout(() => {
      stopListening()
      resolve()
    }, ms)
  })
}

/** Settles like `promise`, or rejects with the signal's reason as soon as it aborts. */
export async function untilAborted<T> (promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => {})
    throw signal.reason
  }
  let stopListening = nothingToRemove
  const aborted = new Promise<never>((_resolve, reject) => {
    stopListening = onAbort(signal, () => reject(signal.reason))
  })
  try {
    return await Promise.race([promise, aborted])
  } finally {
    stopListening()
  }
}
