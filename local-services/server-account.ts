// Who runs the throwaway PostgreSQL, and in which folder it can live.
// PostgreSQL refuses to run as root, so as root it runs as `nobody`, which
// every Unix has (the `postgres` account exists only where a PostgreSQL
// package was installed). `nobody` cannot enter a clone kept in a private
// folder (root's home, a `mktemp -d` folder), so as root the server's files
// live in a folder of its own under the OS temp dir, keyed by the clone.
import { createHash } from 'node:crypto'
import { chmodSync, lstatSync, mkdirSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, dirname, join, parse } from 'node:path'
import { fileURLToPath } from 'node:url'
import { systemAccount } from './process.js'

/** The clone (or installed copy) this module belongs to. */
export const CLONE_DIR = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '')

/** An account to run a server as: its name and ids. */
export interface Account { name: string, uid: number, gid: number }

/** True when this process runs as root. */
export function isRoot (): boolean {
  return process.getuid?.() === 0
}

/** The account PostgreSQL must run as: `nobody` when we are root, else undefined (ourselves). */
export function serverAccount (): Account | undefined {
  return isRoot() ? { name: 'nobody', ...systemAccount('nobody') } : undefined
}

/**
 * Fails with a sentence naming the first folder on `path` that `account`
 * cannot enter (no search permission for it), so a server that could not
 * reach its files is explained before it starts.
 */
export function assertReachable (path: string, account: Account, what: string): void {
  for (let dir = path; ; dir = dirname(dir)) {
    const { mode, uid, gid } = statSync(dir)
    const bit = uid === account.uid ? 0o100 : gid === account.gid ? 0o010 : 0o001
    if ((mode & bit) === 0) {
      throw new Error(`${what} ${path} is out of reach of the "${account.name}" account that PostgreSQL runs as (it cannot enter ${dir}): set TMPDIR to a folder everyone can enter, such as /tmp`)
    }
    if (dir === parse(dir).root) return
  }
}

/**
 * A folder for this clone's server files that the server's account can reach:
 * the clone itself, or, as root, `<tmpdir>/fastify-resilience-<clone name>-<hash>`,
 * owned by root, writable only by root, readable by everyone (created if
 * missing; a folder of that name that is not so is refused, since other
 * users can create names in the temp dir).
 */
export function serverHome (): string {
  const account = serverAccount()
  if (account === undefined) return CLONE_DIR
  const name = basename(CLONE_DIR).replace(/[^\w.-]/g, '_')
  const hash = createHash('sha256').update(CLONE_DIR).digest('hex').slice(0, 12)
  const home = join(tmpdir(), `fastify-resilience-${name}-${hash}`)
  try {
    mkdirSync(home)
    chmodSync(home, 0o755)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    const stat = lstatSync(home)
    if (!stat.isDirectory() || stat.uid !== 0 || (stat.mode & 0o022) !== 0) {
      throw new Error(`${home} exists but is not a folder that only root can write to: remove it`)
    }
  }
  assertReachable(home, account, 'the folder')
  return home
}
