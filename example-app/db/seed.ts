// Demo players for development. `npm start` puts them into its embedded
// PostgreSQL; the app never seeds a database named by DATABASE_URL. To fill a
// development database of your own:
//   DATABASE_URL=postgres://... npx tsx example-app/db/seed.ts [count]
import { pathToFileURL } from 'node:url'
import pg from 'pg'
import type { Pool } from 'pg'
import { migrate } from './migrate.js'

/** How many players `npm start` and the script seed. */
export const DEMO_PLAYERS = 10_000

/**
 * Inserts players 1..count when the table is empty (none otherwise), with
 * deterministic names, levels and scores; returns how many it inserted.
 */
export async function seedPlayers (pool: Pool, count: number): Promise<number> {
  const { rowCount } = await pool.query(`
    INSERT INTO players (id, username, level, score)
    SELECT n, 'player_' || n, 1 + (n * 7919) % 60, (n * 104729) % 100000
    FROM generate_series(1, $1::int) AS n
    WHERE NOT EXISTS (SELECT 1 FROM players)`, [count])
  return rowCount ?? 0
}

/** Migrates the database at `url`, then seeds it; returns how many players it inserted. */
export async function seedDatabase (url: string, count = DEMO_PLAYERS): Promise<number> {
  const pool = new pg.Pool({ connectionString: url, max: 1 })
  try {
    await migrate(pool)
    return await seedPlayers(pool, count)
  } finally {
    await pool.end()
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const url = process.env.DATABASE_URL
  const count = Number(process.argv[2] ?? DEMO_PLAYERS)
  if (url === undefined || url === '' || !Number.isInteger(count) || count < 1 || count > 1_000_000) {
    console.error('Usage: DATABASE_URL=postgres://... npx tsx example-app/db/seed.ts [count: 1 to 1000000, default 10000]')
    process.exitCode = 1
  } else {
    seedDatabase(url, count).then(
      (inserted) => console.log(inserted === 0 ? 'The players table is not empty: nothing seeded.' : `Seeded ${inserted} players.`),
      (error: unknown) => {
        console.error(`Cannot seed the players database: ${error instanceof Error ? error.message : String(error)}`)
        process.exitCode = 1
      })
  }
}
