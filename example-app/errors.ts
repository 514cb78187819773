import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { isCausedByRequest } from 'fastify-resilience'

/**
 * The service's error handler: answers never carry internals. Errors with a
 * client status, Fastify's and the suite's own errors (`FST_...`, whose
 * messages are written for clients) are sent as they are, with their headers
 * (`Retry-After`). An error the request caused that no schema caught (a
 * PostgreSQL data or constraint error) is a 400; anything else is logged in
 * full and answered with its status and a message that says nothing of hosts,
 * ports or drivers.
 */
export function safeErrorHandler (error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const status = typeof error.statusCode === 'number' && error.statusCode >= 400 ? error.statusCode : 500
  if (status < 500 || (typeof error.code === 'string' && error.code.startsWith('FST_'))) {
    if (status >= 500) request.log.error({ err: error }, 'request failed')
    return reply.send(error)
  }
  if (error.statusCode === undefined && isCausedByRequest(error)) {
    request.log.info({ err: error }, 'request refused by the database')
    return reply.code(400).send({ statusCode: 400, code: 'INVALID_REQUEST', error: 'Bad Request', message: 'the request was refused as invalid' })
  }
  request.log.error({ err: error }, 'request failed')
  return reply.code(status).send({ statusCode: status, error: status === 500 ? 'Internal Server Error' : 'Server Error', message: 'internal error' })
}
