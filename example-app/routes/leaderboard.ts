import type { FastifyInstance } from 'fastify'
import type { PlayerCache } from '../cache.js'
import type { Leaderboard, LeaderboardEntry } from '../model.js'

export async function leaderboardRoutes (app: FastifyInstance, { cache }: { cache: PlayerCache }): Promise<void> {
  app.get<{ Querystring: { limit: string } }>('/leaderboard', {
    schema: {
      querystring: {
        type: 'object',
        // 1 to 100, in plain digits (see params.ts).
        properties: { limit: { type: 'string', pattern: '^(?:[1-9][0-9]?|100)$', default: '10' } },
        additionalProperties: false
      }
    },
    config: { resilience: { flag: 'leaderboard', shed: { priority: 'sheddable' } } }
  }, async (request, reply) => {
    const limit = Number(request.query.limit)
    // Tiers written out with app.fallback, as in routes/players.ts (see why there).
    const { value, tier } = await app.fallback<Leaderboard>({
      name: 'leaderboard',
      primary: async ({ signal }) => await app.breaker('database').execute(async () => {
        const { rows } = await app.pg.query<LeaderboardEntry>('SELECT id, username, score::float8 AS score FROM players ORDER BY score DESC, id LIMIT 100')
        return { players: rows }
      }, signal),
      // The last good leaderboard, kept in Redis.
      cache: async () => await cache.getLeaderboard(),
      store: async (board) => { await cache.setLeaderboard(board.players) },
      fallback: () => ({ players: [], degraded: true }),
      logger: request.log
    })
    reply.header('x-served-by', tier)
    return { ...value, players: value.players.slice(0, limit) }
  })
}
