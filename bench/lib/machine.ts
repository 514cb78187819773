/** What RESULTS.md says about where and how its numbers were measured. */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'

const require = createRequire(import.meta.url)

function packageVersion (name: string): string {
  try {
    return (require(`${name}/package.json`) as { version: string }).version
  } catch {
    return 'not installed'
  }
}

function gitCommit (): string {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() !== ''
    return dirty ? `${commit} (with uncommitted changes)` : commit
  } catch {
    return 'unknown'
  }
}

function osName (): string {
  try {
    const release = readFileSync('/etc/os-release', 'utf8')
    return /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(release)?.[1] ?? `${os.type()} ${os.release()}`
  } catch {
    return `${os.type()} ${os.release()}`
  }
}

/** Markdown lines describing this machine, the software and the date. */
export function machineDescription (date: Date): string[] {
  const cpus = os.cpus()
  const versions = ['fastify', 'cockatiel', 'prom-client', 'opossum', 'autocannon', 'mitata', '@fastify/under-pressure', 'pg']
    .map((name) => `${name} ${packageVersion(name)}`).join(', ')
  return [
    `- Date: ${date.toISOString().replace('T', ' ').slice(0, 16)} UTC`,
    `- Machine: ${cpus.length} × ${cpus[0]?.model.trim() ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, ${osName()} (kernel ${os.release()})`,
    `- Node ${process.version}; ${versions}`,
    `- fastify-resilience at commit ${gitCommit()}, built to \`dist/\` (what \`npm run bench\` measures; the test suite's smoke run uses the TypeScript sources)`
  ]
}
