import { spawn } from 'node:child_process'
import type { ChildProcess, SpawnOptions } from 'node:child_process'
import { accessSync, constants, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'

/** A server binary is not installed; the message says how to install it. */
export class MissingBinaryError extends Error {
  constructor (binary: string, howToInstall: string, where = 'on PATH') {
    super(`${binary} was not found ${where}: ${howToInstall}`)
    this.name = 'MissingBinaryError'
  }
}

/** Whether `path` exists and may be run by this process. */
export function isExecutable (path: string): boolean {
  try {
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** The first executable `name` in the given directories, then on PATH. */
export function findBinary (name: string, preferredDirs: string[] = []): string | undefined {
  const dirs = [...preferredDirs, ...(process.env.PATH ?? '').split(delimiter).filter(Boolean)]
  for (const dir of dirs) {
    const candidate = join(dir, name)
    if (isExecutable(candidate)) return candidate
  }
  return undefined
}

/** Debian-style versioned install directories, newest version first. */
export function versionedDirs (root: string, suffix: string): string[] {
  try {
    return readdirSync(root)
      .filter((entry) => /^\d+$/.test(entry))
      .sort((a, b) => Number(b) - Number(a))
      .map((version) => join(root, version, suffix))
  } catch {
    return []
  }
}

/**
 * Runs `start` again (up to `attempts` times in all) while it fails because a
 * port it was handed by {@link freePort} was taken before the server bound it:
 * the port is free when asked for, but anything (a client's outgoing
 * connection, another server starting) may take it in between.
 */
export async function retryIfPortTaken<T> (start: () => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start()
    } catch (error) {
      if (attempt >= attempts || !/Address already in use|EADDRINUSE/.test(String((error as Error | undefined)?.message))) throw error
    }
  }
}

/** Asks the kernel for a free loopback TCP port. */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

/** uid/gid of a system account, for dropping root privileges (PostgreSQL refuses root). */
export function systemAccount (name: string): { uid: number, gid: number } {
  const entry = readFileSync('/etc/passwd', 'utf8').split('\n').find((line) => line.startsWith(`${name}:`))
  if (entry === undefined) {
    throw new Error(`there is no "${name}" account in /etc/passwd to run the server as (PostgreSQL refuses to run as root): create it, or run as a normal user`)
  }
  const [, , uid, gid] = entry.split(':')
  return { uid: Number(uid), gid: Number(gid) }
}

/**
 * Every server process started by this module, killed with SIGKILL (and its
 * folder removed) if the process exits without stopping it, so no server is
 * ever left behind by a crash or an interrupted run.
 */
const live = new Map<ChildProcess, string>()
/** Folders shared by several servers (a cluster's), removed at exit unless removed before. */
const scratchFolders = new Set<string>()
let exitHookInstalled = false

/**
 * A new temporary folder for several servers' folders (a Redis Cluster's
 * nodes, each kept across its restarts), removed by `removeScratchFolder`,
 * or at exit if the process ends without removing it.
 */
export function makeScratchFolder (prefix: string): string {
  installExitHook()
  const dir = mkdtempSync(join(tmpdir(), prefix))
  scratchFolders.add(dir)
  return dir
}

/** Removes a folder made by `makeScratchFolder` (stop its servers first). */
export function removeScratchFolder (dir: string): void {
  rmSync(dir, { recursive: true, force: true })
  scratchFolders.delete(dir)
}

function installExitHook (): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on('exit', () => {
    for (const [child, dir] of live) {
      try { child.kill('SIGKILL') } catch {}
      if (dir !== '') rmSync(dir, { recursive: true, force: true })
    }
    for (const dir of scratchFolders) rmSync(dir, { recursive: true, force: true })
  })
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    // Acts only when nobody else handles the signal (then it dies of it, as the
    // default would, after the exit hook); a program that shuts down in order
    // (the example server, the test launcher) stops the servers itself.
    process.on(signal, () => {
      if (process.listenerCount(signal) > 1) return
      process.exitCode = 128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1)
      process.exit()
    })
  }
}

/** The line of a server's log that says why it stopped: its first FATAL, PANIC or error, else its last line. */
export function keyLine (log: string): string {
  const lines = log.split('\n').map((line) => line.trim()).filter(Boolean)
  return lines.find((line) => /\b(FATAL|PANIC)\b|\berror:/i.test(line)) ?? lines.at(-1) ?? '(no output)'
}

/** A server process we own: output kept for error messages, stopped exactly once. */
export class ServerProcess {
  readonly child: ChildProcess
  readonly name: string
  readonly dir: string
  private output = ''
  private readonly exited: Promise<void>
  private stopping: Promise<void> | undefined

  /** Keep `dir` when the server stops (a persistent data folder). */
  private readonly keepDir: boolean

  constructor (name: string, command: string, args: string[], dir: string, options: SpawnOptions & { keepDir?: boolean } = {}) {
    installExitHook()
    this.name = name
    this.dir = dir
    const { keepDir = false, ...spawnOptions } = options
    this.keepDir = keepDir
    // Own process group: a Ctrl-C meant for the parent must not stop the server under it;
    // the parent stops it in order (and the exit hook kills it if the parent dies).
    this.child = spawn(command, args, { ...spawnOptions, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
    live.set(this.child, keepDir ? '' : dir)
    const keep = (chunk: Buffer): void => { this.output = (this.output + chunk.toString()).slice(-8000) }
    this.child.stdout?.on('data', keep)
    this.child.stderr?.on('data', keep)
    this.exited = new Promise((resolve) => {
      this.child.once('exit', () => {
        live.delete(this.child)
        resolve()
      })
      this.child.once('error', (error) => {
        this.output += `\n${error.message}`
        live.delete(this.child)
        resolve()
      })
    })
  }

  get pid (): number {
    return this.child.pid ?? -1
  }

  get hasExited (): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null || !live.has(this.child)
  }

  /** The last lines the server printed, for error messages. */
  get log (): string {
    return this.output.trim()
  }

  /** Polls `check` until it succeeds; fails early with the server's log if the server dies. */
  async waitUntilReady (check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (this.hasExited) throw new Error(`${this.name} exited during start-up: ${keyLine(this.log)}\n${this.log}`)
      if (await check()) return
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    throw new Error(`${this.name} did not become ready within ${timeoutMs} ms:\n${this.log}`)
  }

  /** Freezes the server (SIGSTOP): connections stay open, nothing answers. */
  pause (): void {
    this.child.kill('SIGSTOP')
  }

  /** Undoes `pause()`. */
  resume (): void {
    this.child.kill('SIGCONT')
  }

  /** Stops the server with `signal`, escalating to SIGKILL, then removes its folder. Idempotent. */
  async stop (signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<void> {
    this.stopping ??= (async () => {
      if (!this.hasExited) {
        this.child.kill('SIGCONT')
        this.child.kill(signal)
        const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs)
        await this.exited
        clearTimeout(timer)
      }
      if (!this.keepDir) rmSync(this.dir, { recursive: true, force: true })
    })()
    await this.stopping
  }
}
