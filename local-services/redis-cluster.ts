import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { MissingBinaryError, findBinary, freePort, makeScratchFolder, removeScratchFolder, retryIfPortTaken } from './process.js'
import { redisCommand, startRedis } from './redis.js'
import type { RedisServer } from './redis.js'

/** The number of hash slots of a Redis Cluster. */
const SLOTS = 16384

/** Where a client reaches a node: what ioredis's `Cluster` takes as start-up nodes. */
export interface RedisClusterNode {
  host: string
  port: number
}

/** A throwaway Redis Cluster of masters without replicas, on loopback ports, in one temporary folder. */
export interface RedisCluster {
  /** Every master's address, in master order (`nodes[i]` is `masters[i]`'s). */
  nodes: RedisClusterNode[]
  /** The servers, in master order; `restartMaster(i)` puts the new server of master i in its place. */
  masters: RedisServer[]
  /** Stops every master and removes the cluster's folder. Idempotent. */
  stop: () => Promise<void>
  /**
   * Stops master `i` (SIGTERM) and keeps its folder: its slots go unserved,
   * the other masters keep serving theirs (`cluster-require-full-coverage no`).
   */
  stopMaster: (i: number) => Promise<void>
  /**
   * Starts master `i` again (stopping it first if it runs) on the same ports
   * with the same folder and nodes.conf, so it rejoins with its slots (empty:
   * persistence is off), and returns once every node sees the whole cluster
   * healthy again (about 2 s: a restarted master waits that long before it
   * serves, and the others take it back no sooner). Restart several stopped
   * masters at once (`Promise.all`): the cluster is whole only with all of
   * them, so restarting one while another stays stopped fails.
   */
  restartMaster: (i: number) => Promise<void>
  /** The index of the master serving `key`'s hash slot (slots never move: there are no replicas to fail over to). */
  slotOwner: (key: string) => number
}

/** CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with. */
function crc16 (bytes: Uint8Array): number {
  let crc = 0
  for (const byte of bytes) {
    crc ^= byte << 8
    for (let bit = 0; bit < 8; bit++) {
      crc = (crc & 0x8000) !== 0 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
    }
  }
  return crc
}

/** The hash slot of `key`, as CLUSTER KEYSLOT computes it (a non-empty `{hash tag}` alone is hashed). */
export function keySlot (key: string): number {
  let bytes = Buffer.from(key)
  const open = bytes.indexOf('{')
  if (open !== -1) {
    const close = bytes.indexOf('}', open + 1)
    if (close > open + 1) bytes = bytes.subarray(open + 1, close)
  }
  return crc16(bytes) % SLOTS
}

/** CLUSTER INFO of the node on `port` as fields, or undefined when it cannot be asked. */
async function clusterInfo (port: number): Promise<Record<string, string> | undefined> {
  try {
    const reply = await redisCommand(port, ['CLUSTER', 'INFO'], 2000)
    if (typeof reply !== 'string') return undefined
    return Object.fromEntries(reply.split('\r\n').filter(Boolean).map((line) => line.split(':', 2) as [string, string]))
  } catch {
    return undefined
  }
}

/**
 * Whether every node says the cluster is ok, knows every node, and sees all
 * slots assigned to nodes that it does not take for failing (`cluster_slots_ok`,
 * so a master that came back counts only once the others took it back).
 */
async function isHealthy (ports: number[]): Promise<boolean> {
  const infos = await Promise.all(ports.map(clusterInfo))
  return infos.every((info) => info !== undefined &&
    info.cluster_state === 'ok' &&
    info.cluster_slots_assigned === String(SLOTS) &&
    info.cluster_slots_ok === String(SLOTS) &&
    info.cluster_known_nodes === String(ports.length))
}

/**
 * Polls until the cluster is healthy; fails early when `trouble()` names a
 * reason it never will be (a master exited, or is stopped).
 */
async function waitUntilHealthy (ports: number[], what: string, trouble: () => string | undefined, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await isHealthy(ports))) {
    const reason = trouble()
    if (reason !== undefined) throw new Error(`the Redis Cluster cannot become healthy ${what}: ${reason}`)
    if (Date.now() > deadline) {
      const infos = await Promise.all(ports.map(async (port) => `${port}: ${JSON.stringify(await clusterInfo(port))}`))
      throw new Error(`the Redis Cluster was not healthy within ${timeoutMs} ms ${what}:\n${infos.join('\n')}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** Why the cluster cannot become healthy: the first master that should run but exited, with its log. */
function exitedMaster (masters: RedisServer[], shouldRun: (i: number) => boolean = () => true): string | undefined {
  const i = masters.findIndex((server, index) => shouldRun(index) && server.process.hasExited)
  const server = masters[i]
  return server === undefined ? undefined : `master ${i} (port ${server.port}) exited:\n${server.process.log}`
}

/** `count` different free loopback ports. */
async function freePorts (count: number): Promise<number[]> {
  const ports = new Set<number>()
  while (ports.size < count) ports.add(await freePort())
  return [...ports]
}

/** Runs `redis-cli --cluster create`: every slot spread over the masters, no replicas. */
async function createCluster (cli: string, ports: number[]): Promise<void> {
  const args = ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '0', '--cluster-yes']
  await new Promise<void>((resolve, reject) => {
    execFile(cli, args, { timeout: 60_000 }, (error, stdout, stderr) => {
      if (error === null) resolve()
      else reject(new Error(`redis-cli ${args.join(' ')} failed (${error.message.split('\n')[0] ?? ''}):\n${stdout}${stderr}`))
    })
  })
}

/** master index of every slot, from CLUSTER SLOTS (`[[start, end, [host, port, id], ...replicas], ...]`). */
async function slotOwners (masters: RedisServer[]): Promise<Int16Array> {
  const owners = new Int16Array(SLOTS).fill(-1)
  const reply = await redisCommand(masters[0]?.port ?? 0, ['CLUSTER', 'SLOTS'])
  if (!Array.isArray(reply)) throw new Error(`CLUSTER SLOTS answered ${String(reply)}`)
  for (const range of reply) {
    const [start, end, [, port] = []] = range as [number, number, [string, number]?]
    const owner = masters.findIndex((master) => master.port === port)
    if (owner === -1) throw new Error(`CLUSTER SLOTS names port ${String(port)}, which is no master of this cluster`)
    owners.fill(owner, start, end + 1)
  }
  const unassigned = owners.indexOf(-1)
  if (unassigned !== -1) throw new Error(`CLUSTER SLOTS assigns no master to slot ${unassigned}`)
  return owners
}

/**
 * Starts `count` masters on free ports (and free bus ports) and joins them
 * into one cluster; on failure, stops what it started and removes its folder.
 */
async function startMasters (cli: string, count: number): Promise<{ root: string, ports: number[], masters: RedisServer[], owners: Int16Array }> {
  const root = makeScratchFolder('resilience-redis-cluster-')
  const ports = await freePorts(2 * count)
  const node = (i: number): { port: number, dir: string, args: string[] } => masterOptions(root, ports, count, i)
  const masters: RedisServer[] = []
  try {
    const started = await Promise.allSettled(Array.from({ length: count }, async (_, i) => await startRedis(node(i))))
    for (const result of started) if (result.status === 'fulfilled') masters.push(result.value)
    const failure = started.find((result): result is PromiseRejectedResult => result.status === 'rejected')
    if (failure !== undefined) throw failure.reason
    await createCluster(cli, masters.map((master) => master.port))
    await waitUntilHealthy(ports.slice(0, count), 'while it was created', () => exitedMaster(masters))
    return { root, ports, masters, owners: await slotOwners(masters) }
  } catch (error) {
    await Promise.allSettled(masters.map(async (master) => await master.stop()))
    removeScratchFolder(root)
    throw error
  }
}

/** How master `i` starts: its port and bus port (`ports` holds the masters' ports, then their bus ports), in its own folder of `root`. */
function masterOptions (root: string, ports: number[], count: number, i: number): { port: number, dir: string, args: string[] } {
  return {
    port: ports[i] as number,
    dir: join(root, `node-${i}`),
    args: [
      '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf',
      '--cluster-node-timeout', '1000', '--cluster-require-full-coverage', 'no',
      // The bus port is by default the port + 10000, which may be taken or past 65535.
      '--cluster-port', String(ports[count + i])
    ]
  }
}

/**
 * Starts a throwaway Redis Cluster: `masters` (at least 3, which
 * `redis-cli --cluster create` requires) `redis-server` processes in cluster
 * mode, with persistence off and a 1 s node timeout, each on a free loopback
 * port (and a free cluster bus port) in its own folder of one temporary
 * folder; then joins them with every slot assigned and no replicas, and
 * returns once every node sees the cluster ok with all slots served.
 * `cluster-require-full-coverage no`: when a master is stopped, the others
 * go on serving their slots.
 */
export async function startRedisCluster (options: { masters?: number } = {}): Promise<RedisCluster> {
  const count = options.masters ?? 3
  if (!Number.isInteger(count) || count < 3) throw new RangeError(`a Redis Cluster needs at least 3 masters, not ${count}`)
  if (findBinary('redis-server') === undefined) {
    throw new MissingBinaryError('redis-server', 'install Redis (Debian: apt-get install redis-server)')
  }
  const cli = findBinary('redis-cli')
  if (cli === undefined) {
    throw new MissingBinaryError('redis-cli', 'install the Redis tools (Debian: apt-get install redis-tools, which redis-server brings)')
  }

  const { root, ports, masters, owners } = await retryIfPortTaken(async () => await startMasters(cli, count))

  const master = (i: number): RedisServer => {
    const server = masters[i]
    if (server === undefined) throw new RangeError(`there is no master ${i} in a cluster of ${count}`)
    return server
  }
  // What each master should be doing: a stopped one is not waited for, and
  // the cluster cannot be whole without it.
  const states = masters.map((): 'running' | 'stopped' | 'restarting' => 'running')
  const trouble = (): string | undefined => {
    const stopped = states.indexOf('stopped')
    if (stopped !== -1) return `master ${stopped} is stopped (restart every stopped master, at once: the cluster is whole only with all of them)`
    return exitedMaster(masters, (i) => states[i] === 'running')
  }
  let stopping: Promise<void> | undefined
  // Restarts under way, which stop() waits for so that it stops their servers too.
  const starts = new Set<Promise<void>>()
  return {
    nodes: masters.map((server) => ({ host: '127.0.0.1', port: server.port })),
    masters,
    stop: async () => {
      stopping ??= (async () => {
        await Promise.allSettled(starts)
        await Promise.allSettled(masters.map(async (server) => await server.stop()))
        removeScratchFolder(root)
      })()
      await stopping
    },
    stopMaster: async (i) => {
      const server = master(i)
      states[i] = 'stopped'
      await server.stop()
    },
    restartMaster: async (i) => {
      const server = master(i)
      states[i] = 'restarting'
      await server.stop()
      if (stopping !== undefined) throw new Error('the Redis Cluster was stopped')
      const start = startRedis(masterOptions(root, ports, count, i)).then((restarted) => { masters[i] = restarted })
      starts.add(start)
      try {
        await start
      } finally {
        starts.delete(start)
      }
      if (stopping !== undefined) throw new Error(`the Redis Cluster was stopped while master ${i} restarted`)
      states[i] = 'running'
      await waitUntilHealthy(ports.slice(0, count), `after master ${i} restarted`, trouble)
    },
    slotOwner: (key) => owners[keySlot(key)] as number
  }
}
