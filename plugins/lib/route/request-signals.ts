import type { FastifyReply } from 'fastify'

/**
 * The abort signals of one request, made only when something asks for them:
 * the client signal aborts when the client goes away; the attempt signal also
 * aborts when the current attempt times out, and is made afresh for each
 * attempt. A request that needs neither pays for neither.
 */
export class RequestSignals {
  private readonly reply: FastifyReply
  private clientController: AbortController | undefined
  private attemptController: AbortController | undefined
  private watching = false
  private goneReason: Error | undefined
  /** Why the current attempt ended early, for a signal first asked for afterwards. */
  private attemptAbortReason: Error | undefined

  constructor (reply: FastifyReply) {
    this.reply = reply
  }

  /** Aborts when the client disconnects before the reply is complete. */
  get client (): AbortSignal {
    if (this.clientController === undefined) {
      this.clientController = new AbortController()
      this.watchClient()
    }
    return this.clientController.signal
  }

  /** The client disconnected before the reply was complete (checked now, no signal built). */
  get clientGone (): boolean {
    if (this.goneReason !== undefined) return true
    const response = this.reply.raw
    return response.destroyed && !response.writableEnded
  }

  /** Aborts when the client disconnects or the current attempt times out. */
  get attempt (): AbortSignal {
    if (this.attemptController === undefined) {
      this.attemptController = new AbortController()
      if (this.attemptAbortReason !== undefined) this.attemptController.abort(this.attemptAbortReason)
      this.watchClient()
    }
    return this.attemptController.signal
  }

  /** The next attempt gets a fresh signal (the last one may have timed out). */
  startAttempt (): void {
    this.attemptAbortReason = undefined
    if (this.attemptController?.signal.aborted === true) this.attemptController = undefined
  }

  /**
   * The current attempt timed out: abort its signal, and the signal of a
   * handler that only asks for it later (it is still running on its own).
   */
  abortAttempt (reason: Error): void {
    this.attemptAbortReason = reason
    this.attemptController?.abort(reason)
  }

  private watchClient (): void {
    if (!this.watching) {
      this.watching = true
      const response = this.reply.raw
      const onClose = (): void => {
        if (response.writableEnded) return
        this.goneReason = new Error('the client closed the connection before the reply')
      }
      // Already closed: 'close' will not come again.
      if (response.destroyed) onClose()
      else response.once('close', () => { onClose(); this.abortIfGone() })
    }
    this.abortIfGone()
  }

  private abortIfGone (): void {
    if (this.goneReason === undefined) return
    this.clientController?.abort(this.goneReason)
    this.attemptController?.abort(this.goneReason)
  }
}
