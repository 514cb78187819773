/**
 * local-services/install-binaries.sh, what `npm run test:fresh` (the README's
 * test command, and .ci/run's) runs before the tests: it installs only what is
 * missing, with apt-get, as root or through sudo, and says what to do where it
 * cannot. Run on a PATH of fakes (apt-get and sudo record their arguments), so
 * nothing is installed.
 */
import { spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'tap'

const script = fileURLToPath(new URL('../../local-services/install-binaries.sh', import.meta.url))

interface Run { status: number | null, stdout: string, stderr: string, calls: string[] }

/** Runs the script with only `commands` on PATH; `uid` is what `id -u` says. */
function install (t: { teardown: (fn: () => void) => void }, commands: string[], uid = 0): Run {
  const bin = mkdtempSync(join(tmpdir(), 'install-binaries-'))
  t.teardown(() => rmSync(bin, { recursive: true, force: true }))
  const log = join(bin, 'calls.log')
  const fakes: Record<string, string> = {
    id: `echo ${uid}`,
    'apt-get': `echo "apt-get $*" >> ${log}`,
    sudo: `echo "sudo $*" >> ${log}; "$@"`
  }
  for (const name of commands) {
    writeFileSync(join(bin, name), `#!/bin/sh\n${fakes[name] ?? 'exit 0'}\n`)
    chmodSync(join(bin, name), 0o755)
  }
  const run = spawnSync('/bin/bash', [script], { env: { PATH: bin }, encoding: 'utf8' })
  return { status: run.status, stdout: run.stdout, stderr: run.stderr, calls: existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : [] }
}

const ALL = ['redis-server', 'redis-cli', 'prometheus', 'promtool']

test('with every server installed it installs nothing', async (t) => {
  const run = install(t, [...ALL, 'id', 'apt-get'])
  t.equal(run.status, 0)
  t.same(run.calls, [], 'apt-get never called')
})

test('as root it installs only what is missing, with apt-get', async (t) => {
  const run = install(t, ['prometheus', 'promtool', 'redis-server', 'id', 'apt-get'])
  t.equal(run.status, 0, run.stderr)
  t.same(run.calls, ['apt-get update -qq', 'apt-get install -y -qq --no-install-recommends redis-server'], 'redis-cli missing: the redis-server package brings it')
  t.match(run.stdout, /installing redis-server/)
})

test('as another user it goes through sudo, or says what root must run', async (t) => {
  const viaSudo = install(t, ['redis-server', 'redis-cli', 'id', 'apt-get', 'sudo'], 1000)
  t.equal(viaSudo.status, 0, viaSudo.stderr)
  t.same(viaSudo.calls.filter((call) => call.startsWith('sudo')), ['sudo apt-get update -qq', 'sudo apt-get install -y -qq --no-install-recommends prometheus'])

  const noSudo = install(t, ['redis-server', 'redis-cli', 'id', 'apt-get'], 1000)
  t.equal(noSudo.status, 1)
  t.same(noSudo.calls, [], 'nothing attempted')
  t.match(noSudo.stderr, /as root run: apt-get update && apt-get install -y prometheus/)
})

test('without apt-get it names what is missing and stops', async (t) => {
  const run = install(t, ['id'])
  t.equal(run.status, 1)
  t.match(run.stderr, /redis-server prometheus missing, and only apt-get/)
})
