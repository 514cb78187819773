import type { FastifyInstance } from 'fastify'
import type { PlayerCache } from '../cache.js'
import type { DegradedPlayer, Player } from '../model.js'
import { playerParams } from './params.js'

const scoreBody = {
  type: 'object',
  properties: { score: { type: 'integer', minimum: 0, maximum: 1e12 } },
  required: ['score'],
  additionalProperties: false
} as const

function notFound (id: number): Error {
  return Object.assign(new Error(`player ${id} not found`), { statusCode: 404 })
}

const PLAYER_COLUMNS = 'id, username, level, score::float8 AS score, updated_at AS "updatedAt"'

export async function playerRoutes (app: FastifyInstance, { cache }: { cache: PlayerCache }): Promise<void> {
  // A read with tiers: the composition is written out with app.fallback,
  // because config.resilience's fallback(request, error) only replaces an
  // error with a value. The tiers need the fallback plugin: the Redis copy
  // tried only after retry and breaker gave up, each answer from PostgreSQL
  // written through to Redis, the tier in `x-served-by` and in fallback_total.
  app.get<{ Params: { id: string } }>('/players/:id', {
    schema: { params: playerParams },
    config: { resilience: { flag: 'player_lookup' } }
  }, async (request, reply) => {
    const id = Number(request.params.id)
    const { value, tier } = await app.fallback<Player | DegradedPlayer>({
      name: 'player',
      // The source of truth: PostgreSQL, through the database breaker, retried on transient errors.
      primary: async ({ signal }) => await app.retry(async () => await app.breaker('database').execute(async () => {
        const { rows } = await app.pg.query<Player>(`SELECT ${PLAYER_COLUMNS} FROM players WHERE id = $1`, [id])
        if (rows[0] === undefined) throw notFound(id)
        return rows[0]
      }, signal), { operation: 'player_lookup', signal }),
      cache: async () => await cache.getPlayer(id),
      // Only the primary's answers are stored, and they are players.
      store: async (player) => { await cache.setPlayer(player as Player) },
      fallback: () => ({ id, degraded: true }),
      logger: request.log
    })
    reply.header('x-served-by', tier)
    return value
  })

  // A write has no tier to fall back on (a fake success would lose the
  // score), so the route's own options say it all: the database breaker, and
  // retries of transient errors (the statement is idempotent).
  app.put<{ Params: { id: string }, Body: { score: number } }>('/players/:id/score', {
    schema: { params: playerParams, body: scoreBody },
    config: { resilience: { breaker: 'database', retry: { operation: 'score_update' } } }
  }, async (request) => {
    const id = Number(request.params.id)
    const { rows } = await app.pg.query<Player>(
      `UPDATE players SET score = $2, updated_at = now() WHERE id = $1 RETURNING ${PLAYER_COLUMNS}`,
      [id, request.body.score])
    const player = rows[0]
    if (player === undefined) throw notFound(id)
    // Keep the cached copy in step; a dead cache must not fail a committed write.
    cache.setPlayer(player).catch((error: unknown) => request.log.warn({ err: error }, 'could not refresh the cached player'))
    return player
  })
}
