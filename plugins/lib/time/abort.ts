/** A signal that never aborts, for callers that pass none. */
export const neverAborted: AbortSignal = new AbortController().signal

const nothingToRemove = (): void => {}

/** The listeners of each signal, behind the one listener the signal itself holds. */
const listenersOf = new WeakMap<AbortSignal, Set<() => void>>()

/**
 * Calls `listener` once when `signal` aborts; returns what removes it. A
 * signal gets one listener of its own however many calls wait on it (adding
 * and removing EventTarget listeners per call costs more than the call, and
 * Node warns of a leak past 10), and {@link neverAborted}, which every call
 * without a signal shares and which can never fire, gets none.
 */
export function onAbort (signal: AbortSignal, listener: () => void): () => void {
  if (signal === neverAborted) return nothingToRemove
  let listeners = listenersOf.get(signal)
  if (listeners === undefined) {
    const waiting = listeners = new Set()
    listenersOf.set(signal, waiting)
    signal.addEventListener('abort', () => {
      for (const waiter of waiting) waiter()
      waiting.clear()
    }, { once: true })
  }
  const own = listeners
  // Wrapped, so one function added twice is called twice.
  const entry = (): void => listener()
  own.add(entry)
  return () => { own.delete(entry) }
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
export function untilAborted<T> (promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => {})
    return Promise.reject(signal.reason)
  }
  return new Promise<T>((resolve, reject) => {
    const stopListening = onAbort(signal, () => reject(signal.reason))
    promise.then((value) => {
      stopListening()
      resolve(value)
    }, (error: unknown) => {
      stopListening()
      reject(error)
    })
  })
}
