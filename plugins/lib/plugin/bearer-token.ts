import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { UnauthorizedError } from '../../errors.js'

/**
 * An `onRequest` hook that lets a request through only with
 * `Authorization: Bearer <token>`, and otherwise answers 401
 * `FST_RESILIENCE_UNAUTHORIZED` with `WWW-Authenticate: Bearer`. Both sides are
 * hashed first, so the comparison takes the same time whatever the lengths.
 */
export function bearerTokenGuard (token: string): (request: FastifyRequest, reply: FastifyReply) => Promise<void> {
  const expected = createHash('sha256').update(`Bearer ${token}`).digest()
  return async (request, reply) => {
    const header = request.headers.authorization
    const actual = createHash('sha256').update(header ?? '').digest()
    if (header === undefined || !timingSafeEqual(actual, expected)) {
      reply.header('www-authenticate', 'Bearer')
      throw new UnauthorizedError()
    }
  }
}
