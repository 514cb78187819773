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
