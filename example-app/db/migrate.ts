import type { Pool } from 'pg'

/** The players schema, applied idempotently at start. */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS players (
    id         integer PRIMARY KEY,
    username   text NOT NULL UNIQUE,
    level      integer NOT NULL DEFAULT 1 CHECK (level >= 1),
    score      bigint NOT NULL DEFAULT 0 CHECK (score >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
  )`,
  'CREATE INDEX IF NOT EXISTS players_score_idx ON players (score DESC, id)'
]

export async function migrate (pool: Pool): Promise<void> {
  for (const statement of MIGRATIONS) await pool.query(statement)
}

/** Seeds `count` players (ids 1..count) when the table is empty; deterministic, so tests can rely on it. */
export async function seed (pool: Pool, count: number): Promise<void> {
  const { rows } = await pool.query<{ empty: boolean }>('SELECT NOT EXISTS (SELECT 1 FROM players) AS empty')
  if (rows[0]?.empty !== true) return
  await pool.query(`
    INSERT INTO players (id, username, level, score)
    SELECT n, 'player_' || n, 1 + (n * 7919) % 60, (n * 104729) % 100000
    FROM generate_series(1, $1::int) AS n`, [count])
}
