import { execFileSync } from 'node:child_process'
import { chownSync, existsSync, mkdirSync, mkdtempSync, realpathSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import pg from 'pg'
import { MissingBinaryError, ServerProcess, findBinary, freePort, systemAccount, versionedDirs } from './process.js'

const INSTALL_HINT = 'install PostgreSQL server binaries (Debian: apt-get install postgresql) or put the directory holding initdb and postgres in PG_BIN'

/** A throwaway PostgreSQL server on a loopback port, in its own temporary folder. */
export interface PostgresServer {
  /** `postgres://postgres@127.0.0.1:<port>/postgres`, trust authentication. */
  url: string
  port: number
  process: ServerProcess
  /** Fast shutdown, then the folder is removed. */
  stop: () => Promise<void>
}

function postgresBinaries (): { initdb: string, postgres: string } {
  const dirs = [...(process.env.PG_BIN !== undefined ? [process.env.PG_BIN] : []), ...versionedDirs('/usr/lib/postgresql', 'bin')]
  const initdb = findBinary('initdb', dirs)
  if (initdb === undefined) throw new MissingBinaryError('initdb (PostgreSQL)', INSTALL_HINT)
  // postgres must come from the same installation as initdb.
  const postgres = findBinary('postgres', [dirname(realpathSync(initdb))])
  if (postgres === undefined) throw new MissingBinaryError('postgres (PostgreSQL server)', INSTALL_HINT)
  return { initdb, postgres }
}

async function acceptsQueries (url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 })
  client.on('error', () => {})
  try {
    await client.connect()
    await client.query('SELECT 1')
    return true
  } catch {
    return false
  } finally {
    await client.end().catch(() => {})
  }
}

/**
 * Starts a throwaway PostgreSQL: `initdb` into a new temporary folder (or into
 * `dir`, kept across runs, initialised only once), then `postgres` on a free
 * loopback port (or `port`, to restart where clients expect it) with
 * durability switched off (tests and demos only).
 * As root, both run as the `postgres` system user, since initdb refuses root.
 */
export async function startPostgres (options: { dir?: string, port?: number } = {}): Promise<PostgresServer> {
  const { initdb, postgres } = postgresBinaries()
  const persistent = options.dir !== undefined
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'resilience-pg-'))
  mkdirSync(dir, { recursive: true })
  const account = process.getuid?.() === 0 ? systemAccount('postgres') : undefined
  if (account !== undefined) chownSync(dir, account.uid, account.gid)
  const dataDir = join(dir, 'data')
  if (!existsSync(join(dataDir, 'PG_VERSION'))) initialize(initdb, dataDir, account)
  const port = options.port ?? await freePort()
  const server = new ServerProcess('PostgreSQL', postgres, [
    '-D', dataDir, '-p', String(port), '-k', dir,
    '-c', 'listen_addresses=127.0.0.1',
    '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off',
    '-c', 'max_connections=300'
  ], dir, { ...account, keepDir: persistent })
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`
  try {
    await server.waitUntilReady(async () => await acceptsQueries(url))
  } catch (error) {
    await server.stop('SIGKILL')
    throw error
  }
  // SIGINT is PostgreSQL's "fast" shutdown: it ends sessions and stops at once.
  return { url, port, process: server, stop: async () => await server.stop('SIGINT') }
}

function initialize (initdb: string, dataDir: string, account: { uid: number, gid: number } | undefined): void {
  try {
    execFileSync(initdb, ['-D', dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-locale', '--no-sync', '--no-instructions'], {
      stdio: 'pipe', ...account
    })
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? ''
    throw new Error(`initdb failed: ${stderr.trim() || (error as Error).message}`)
  }
}
