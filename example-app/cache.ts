import type { Redis } from 'ioredis'
import type { LeaderboardEntry, Player } from './model.js'

const PLAYER_TTL_SECONDS = 300

/** The Redis side of the service: player copies and the last good leaderboard. */
export interface PlayerCache {
  getPlayer: (id: number) => Promise<Player | undefined>
  setPlayer: (player: Player) => Promise<void>
  getLeaderboard: () => Promise<{ players: LeaderboardEntry[] } | undefined>
  setLeaderboard: (players: LeaderboardEntry[]) => Promise<void>
  /** 'up', 'down' (configured but unreachable) or 'absent' (no Redis configured). */
  status: () => 'up' | 'down' | 'absent'
}

function unavailable (): Error {
  return Object.assign(new Error('no Redis configured: the cache tier is down'), { code: 'CACHE_ABSENT' })
}

export function redisCache (redis: Redis | undefined, prefix: string): PlayerCache {
  if (redis === undefined) {
    return {
      getPlayer: async () => { throw unavailable() },
      setPlayer: async () => { throw unavailable() },
      getLeaderboard: async () => { throw unavailable() },
      setLeaderboard: async () => { throw unavailable() },
      status: () => 'absent'
    }
  }
  const playerKey = (id: number): string => `${prefix}player:${id}`
  const leaderboardKey = `${prefix}leaderboard:last`
  return {
    getPlayer: async (id) => {
      const cached = await redis.get(playerKey(id))
      return cached === null ? undefined : JSON.parse(cached) as Player
    },
    setPlayer: async (player) => { await redis.set(playerKey(player.id), JSON.stringify(player), 'EX', PLAYER_TTL_SECONDS) },
    getLeaderboard: async () => {
      const cached = await redis.get(leaderboardKey)
      return cached === null ? undefined : { players: JSON.parse(cached) as LeaderboardEntry[] }
    },
    setLeaderboard: async (players) => { await redis.set(leaderboardKey, JSON.stringify(players)) },
    status: () => redis.status === 'ready' ? 'up' : 'down'
  }
}
