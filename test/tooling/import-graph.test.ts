/**
 * The import graphs of the library (plugins on top of lib/<concept>/) and of
 * the example app (the library through its public entry points only): no
 * circles. Type-only imports count too: a circle of types is still a knot to
 * untie.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'tap'

const root = fileURLToPath(new URL('../../plugins/', import.meta.url))
const exampleApp = fileURLToPath(new URL('../../example-app/', import.meta.url))

function sources (dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => entry.isDirectory()
    ? sources(join(dir, entry.name))
    : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [])
}

/** Each source file under `dir` (relative to it) with the files it imports by relative path (`import type` too). */
function importGraph (dir = root): Map<string, string[]> {
  const graph = new Map<string, string[]>()
  for (const file of sources(dir)) {
    const text = readFileSync(file, 'utf8')
    const targets = [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)\.js'/g)]
      .map((match) => relative(dir, resolve(dirname(file), `${match[1] as string}.ts`)))
    graph.set(relative(dir, file), [...new Set(targets)])
  }
  return graph
}

/** Every circle of imports, each as the files around it. */
function circles (graph: Map<string, string[]>): string[][] {
  const found: string[][] = []
  const state = new Map<string, 'visiting' | 'done'>()
  const path: string[] = []
  const visit = (file: string): void => {
    if (state.get(file) === 'done') return
    if (state.get(file) === 'visiting') {
      found.push([...path.slice(path.indexOf(file)), file])
      return
    }
    state.set(file, 'visiting')
    path.push(file)
    for (const target of graph.get(file) ?? []) visit(target)
    path.pop()
    state.set(file, 'done')
  }
  for (const file of graph.keys()) visit(file)
  return found
}

test('plugins/ has no import circles', async (t) => {
  const graph = importGraph()
  t.ok(graph.size > 20, `${graph.size} files read`)
  t.same(circles(graph), [], 'no file imports itself, directly or through others')
})

test('lib/ sits under the plugins: it imports only lib/ and errors.ts, each file from a concept folder', async (t) => {
  for (const [file, targets] of importGraph()) {
    if (!file.startsWith('lib/')) continue
    t.match(file, /^lib\/(breaker|failure|flags|metrics|plugin|redis|retry|route|shedding|time)\/[^/]+\.ts$/, `${file} lives in a concept folder`)
    t.notMatch(file, /^lib\/(shared|common|utils?|helpers?|misc)\//, `${file}: a folder named for what it holds, not a catch-all`)
    for (const target of targets) t.ok(target.startsWith('lib/') || target === 'errors.ts', `${file} -> ${target}`)
  }
})

test('example-app/ has no import circles and reaches the library only through its public entry points', async (t) => {
  const graph = importGraph(exampleApp)
  t.ok(graph.size > 10, `${graph.size} files read`)
  t.same(circles(graph), [], 'no file imports itself, directly or through others')
  for (const [file, targets] of graph) {
    for (const target of targets) t.notMatch(target, /^(\.\.\/)+plugins\//, `${file} -> ${target}: not into plugins/ (the library is 'fastify-resilience')`)
  }
})

test('the circle finder finds a circle, so the tests above can fail', async (t) => {
  t.same(circles(new Map([['a.ts', ['b.ts']], ['b.ts', ['c.ts']], ['c.ts', ['a.ts']]])), [['a.ts', 'b.ts', 'c.ts', 'a.ts']])
})

test('a circle of type-only imports across folders is read and found', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'import-graph-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  // The shape example-app/ once had: cache.ts and routes/players.ts, each needing a type of the other.
  mkdirSync(join(dir, 'routes'))
  writeFileSync(join(dir, 'cache.ts'), "import type { Player } from './routes/players.js'\nexport interface PlayerCache { get: () => Player }\n")
  writeFileSync(join(dir, 'routes', 'players.ts'), "import type { PlayerCache } from '../cache.js'\nexport interface Player { id: number }\nexport type Routes = (cache: PlayerCache) => void\n")
  writeFileSync(join(dir, 'app.ts'), "import { redisCache } from './cache.js'\nexport const app = redisCache\n")
  t.same(circles(importGraph(dir)), [['cache.ts', 'routes/players.ts', 'cache.ts']])
})
