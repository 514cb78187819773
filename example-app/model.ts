/** The players service's data, as PostgreSQL returns it and the routes send it. */

/** A row of the `players` table. */
export interface Player {
  id: number
  username: string
  level: number
  score: number
  /** ISO 8601 timestamp of the last score update. */
  updatedAt: string
}

/** What the player route answers when neither PostgreSQL nor the cache has the player. */
export interface DegradedPlayer {
  id: number
  degraded: true
}

/** One line of the leaderboard. */
export type LeaderboardEntry = Pick<Player, 'id' | 'username' | 'score'>

/** The leaderboard route's answer; `degraded` when it is the empty default. */
export interface Leaderboard {
  players: LeaderboardEntry[]
  degraded?: true
}
