/**
 * The API report: every name each entry point of the package exports (values
 * and types, with their kind), read from the TypeScript sources with the
 * compiler's checker and compared with test/tooling/api-surface.json. A change of the
 * public surface (a new export, a removed one, a class turned into a type)
 * fails here until the snapshot is updated on purpose:
 *
 *   UPDATE_API_SURFACE=1 npm test -- test/tooling/api-surface.test.ts --disable-coverage
 *
 * and the updated test/tooling/api-surface.json is reviewed and committed with it.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'tap'
import ts from 'typescript'

const root = fileURLToPath(new URL('../..', import.meta.url))
const snapshotFile = join(root, 'test', 'tooling', 'api-surface.json')
const UPDATE_COMMAND = 'UPDATE_API_SURFACE=1 npm test -- test/tooling/api-surface.test.ts --disable-coverage'

/** Exported name -> kind ('class', 'function', 'const', 'interface', 'type', ...), per subpath of the exports map. */
type Surface = Record<string, Record<string, string>>

/** The TypeScript source of each entry of package.json `exports`: dist/<name>.d.ts is built from plugins/<name>.ts. */
function entrySources (): Array<[subpath: string, source: string]> {
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { exports: Record<string, string | { types?: string }> }
  return Object.entries(manifest.exports)
    .filter(([subpath]) => subpath !== './package.json')
    .map(([subpath, target]) => {
      const types = typeof target === 'string' ? undefined : target.types
      const name = /^\.\/dist\/(.+)\.d\.ts$/.exec(types ?? '')?.[1]
      if (name === undefined) throw new Error(`exports["${subpath}"] has no "types" of the form ./dist/<name>.d.ts (got ${JSON.stringify(types)})`)
      return [subpath, join(root, 'plugins', `${name}.ts`)]
    })
}

function kindOf (checker: ts.TypeChecker, exported: ts.Symbol): string {
  const typeOnly = exported.declarations?.some((declaration) =>
    ts.isExportSpecifier(declaration) && (declaration.isTypeOnly || declaration.parent.parent.isTypeOnly)) ?? false
  const symbol = (exported.flags & ts.SymbolFlags.Alias) !== 0 ? checker.getAliasedSymbol(exported) : exported
  const flags = symbol.flags
  const kinds: string[] = []
  if ((flags & ts.SymbolFlags.Class) !== 0) kinds.push('class')
  if ((flags & ts.SymbolFlags.Function) !== 0) kinds.push('function')
  if ((flags & ts.SymbolFlags.Variable) !== 0) {
    const declaration = symbol.valueDeclaration
    kinds.push(declaration !== undefined && (ts.getCombinedNodeFlags(declaration) & ts.NodeFlags.Const) !== 0 ? 'const' : 'let')
  }
  if ((flags & ts.SymbolFlags.Enum) !== 0) kinds.push('enum')
  if ((flags & ts.SymbolFlags.Interface) !== 0 && (flags & ts.SymbolFlags.Class) === 0) kinds.push('interface')
  if ((flags & ts.SymbolFlags.TypeAlias) !== 0) kinds.push('type')
  if ((flags & (ts.SymbolFlags.ValueModule | ts.SymbolFlags.NamespaceModule)) !== 0) kinds.push('namespace')
  if (kinds.length === 0) kinds.push(`flags ${flags}`)
  const kind = kinds.join(' + ')
  // `export type { SomeClass }` exports the class's type but not the class.
  return typeOnly && (flags & ts.SymbolFlags.Value) !== 0 ? `${kind}, type only` : kind
}

function currentSurface (): Surface {
  const entries = entrySources()
  for (const [subpath, source] of entries) {
    if (!existsSync(source)) throw new Error(`exports["${subpath}"]: its source ${source} does not exist`)
  }
  const parsed = ts.getParsedCommandLineOfConfigFile(join(root, 'tsconfig.json'), { noEmit: true }, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (diagnostic) => {
      throw new Error(ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'))
    }
  })
  if (parsed === undefined) throw new Error('cannot read tsconfig.json')
  const program = ts.createProgram({ rootNames: entries.map(([, source]) => source), options: parsed.options })
  const checker = program.getTypeChecker()
  const surface: Surface = {}
  for (const [subpath, source] of entries) {
    const file = program.getSourceFile(source)
    const moduleSymbol = file === undefined ? undefined : checker.getSymbolAtLocation(file)
    if (moduleSymbol === undefined) throw new Error(`${source} is not a module`)
    const names = checker.getExportsOfModule(moduleSymbol).map((symbol) => [symbol.name, kindOf(checker, symbol)] as const)
    surface[subpath] = Object.fromEntries(names.sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0))
  }
  return surface
}

/** One line per difference: `added ./breaker Foo (class)`, `removed ...`, `changed ./flags Foo: class -> interface`. */
function differences (expected: Surface, actual: Surface): string[] {
  const lines: string[] = []
  for (const subpath of new Set([...Object.keys(expected), ...Object.keys(actual)])) {
    const before = expected[subpath]
    const after = actual[subpath]
    if (before === undefined) lines.push(`added entry ${subpath}`)
    if (after === undefined) lines.push(`removed entry ${subpath}`)
    for (const name of new Set([...Object.keys(before ?? {}), ...Object.keys(after ?? {})])) {
      const was = before?.[name]
      const is = after?.[name]
      if (was === is) continue
      if (was === undefined) lines.push(`added ${subpath} ${name} (${String(is)})`)
      else if (is === undefined) lines.push(`removed ${subpath} ${name} (${was})`)
      else lines.push(`changed ${subpath} ${name}: ${was} -> ${is}`)
    }
  }
  return lines
}

test('each entry point exports exactly the names of the API report (test/tooling/api-surface.json)', async (t) => {
  const actual = currentSurface()
  t.ok(Object.keys(actual['.'] ?? {}).length > 0, 'the root entry exports something')
  t.ok(Object.values(actual).every((names) => Object.keys(names).length > 0), 'every entry exports something')

  const text = `${JSON.stringify(actual, null, 2)}\n`
  if (process.env.UPDATE_API_SURFACE === '1') {
    writeFileSync(snapshotFile, text)
    t.comment(`wrote ${snapshotFile}: review its diff and commit it with the change`)
    return
  }
  if (!existsSync(snapshotFile)) {
    t.fail(`${snapshotFile} is missing; create it with: ${UPDATE_COMMAND}`)
    return
  }
  const expected = JSON.parse(readFileSync(snapshotFile, 'utf8')) as Surface
  const changes = differences(expected, actual)
  if (changes.length === 0) {
    t.same(Object.keys(actual), Object.keys(expected), 'the entries are in the order of the exports map')
    return
  }
  // tap prints `changes` under the failure, one line per difference.
  t.fail(`the public API differs from test/tooling/api-surface.json (${changes.length} change${changes.length === 1 ? '' : 's'}); ` +
    `if on purpose, run \`${UPDATE_COMMAND}\` and commit the updated file`, { changes })
})
