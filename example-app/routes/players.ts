import type { FastifyInstance } from 'fastify'
import type { PlayerCache } from '../cache.js'
import { playerParams } from './params.js'

export interface Player {
  id: number
  username: string
  level: number
  score: number
  updatedAt: string
}

const scoreBody = {
  type: 'object',
  properties: { score: { type: 'integer', minimum: 0, maximum: 1e12 } },
  required: ['score'],
  additionalProperties: false
} as const

function notFound (id: number): Error {
  return Object.assign(new Error(`player ${id} not found`), { statusCode: 404 })
}

const SELECT_PLAYER = 'SELECT id, username, level, score::float8 AS score, updated_at AS "updatedAt" FROM players WHERE id = $1'

export async function playerRoutes (app: FastifyInstance, { cache }: { cache: PlayerCache }): Promise<void> {
  app.get<{ Params: { id: string } }>('/players/:id', {
    schema: { params: playerParams },
    config: { resilience: { flag: 'player_lookup' } }
  }, async (request, reply) => {
    const id = Number(request.params.id)
    const { value, tier } = await app.fallback<Player | { id: number, degraded: true }>({
      name: 'player',
      // The source of truth: PostgreSQL, through the database breaker, retried on transient errors.
      primary: async ({ signal }) => await app.retry(async () => await app.breaker('database').execute(async () => {
        const { rows } = await app.pg.query<Player>(SELECT_PLAYER, [id])
        if (rows[0] === undefined) throw notFound(id)
        return rows[0]
      }, signal), { operation: 'player_lookup', signal }),
      cache: async () => await cache.getPlayer(id),
      store: async (player) => { await cache.setPlayer(player as Player) },
      fallback: () => ({ id, degraded: true }),
      logger: request.log
    })
    reply.header('x-served-by', tier)
    return value
  })

  app.put<{ Params: { id: string }, Body: { score: number } }>('/players/:id/score', {
    schema: { params: playerParams, body: scoreBody },
    // Idempotent statement: transient errors are retried; never answered from a fallback.
    config: { resilience: { breaker: 'database', retry: { maxRetries: 2, operation: 'score_update' } } }
  }, async (request) => {
    const id = Number(request.params.id)
    const { rows } = await app.pg.query<Player>(
      'UPDATE players SET score = $2, updated_at = now() WHERE id = $1 RETURNING id, username, level, score::float8 AS score, updated_at AS "updatedAt"',
      [id, request.body.score])
    const player = rows[0]
    if (player === undefined) throw notFound(id)
    // Keep the cached copy in step; a dead cache must not fail a committed write.
    cache.setPlayer(player).catch((error: unknown) => request.log.warn({ err: error }, 'could not refresh the cached player'))
    return player
  })
}
