/**
 * The Markdown files link to each other and to the code: every relative link
 * must reach a file, and every `#anchor` a heading of the file it points to,
 * named as GitHub names headings. Web links (http, https, mailto) are not
 * followed. The README is for scanning: it stays under 20 KB.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'tap'

const root = fileURLToPath(new URL('../..', import.meta.url))

/** The Markdown files whose links are checked, relative to the repository root. */
function markdownFiles (): string[] {
  const docs = readdirSync(join(root, 'docs')).filter((name) => name.endsWith('.md')).map((name) => `docs/${name}`)
  return ['README.md', 'CONTRIBUTING.md', 'example-app/README.md', 'bench/RESULTS.md', ...docs]
}

/** The lines outside fenced code blocks, where headings and links live. */
function outsideFences (markdown: string): string[] {
  const lines: string[] = []
  let fence: string | undefined
  for (const line of markdown.split('\n')) {
    const marker = /^\s*(```+|~~~+)/.exec(line)?.[1]
    if (fence === undefined && marker !== undefined) fence = marker
    else if (fence !== undefined && marker?.startsWith(fence) === true) fence = undefined
    else if (fence === undefined) lines.push(line)
  }
  return lines
}

/**
 * GitHub's anchor for a heading: lowercase, punctuation other than '-' and
 * '_' dropped, each space turned into '-'; a repeated heading gets -1, -2, ...
 */
function slug (heading: string): string {
  return heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N} _-]/gu, '')
    .replace(/ /g, '-')
}

/** The anchors a Markdown file offers, one per heading. */
function anchors (markdown: string): Set<string> {
  const found = new Set<string>()
  const seen = new Map<string, number>()
  for (const line of outsideFences(markdown)) {
    const heading = /^#{1,6}\s+(.*?)(?:\s+#+)?\s*$/.exec(line)?.[1]
    if (heading === undefined) continue
    const base = slug(heading)
    const count = seen.get(base) ?? 0
    seen.set(base, count + 1)
    found.add(count === 0 ? base : `${base}-${count}`)
  }
  return found
}

/** The link targets of a Markdown file: inline `[text](target)`, images, and `[label]: target` definitions. */
function linkTargets (markdown: string): string[] {
  const targets: string[] = []
  for (const line of outsideFences(markdown).map((text) => text.replace(/(`+)[^`]*?\1/g, ''))) {
    for (const match of line.matchAll(/\]\(\s*<?([^)\s>]*)>?(?:\s+["'(][^)]*)?\)/g)) targets.push(match[1] as string)
    const definition = /^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/.exec(line)?.[1]
    if (definition !== undefined) targets.push(definition)
  }
  return targets
}

/** Every broken link of `files` (relative to `base`), as `file: target (what is wrong)`; also counts the links checked. */
function brokenLinks (base: string, files: string[]): { broken: string[], checked: number } {
  const broken: string[] = []
  let checked = 0
  for (const file of files) {
    const path = join(base, file)
    const text = readFileSync(path, 'utf8')
    for (const target of linkTargets(text)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue
      checked++
      const hash = target.indexOf('#')
      const pathPart = decodeURIComponent(hash === -1 ? target : target.slice(0, hash))
      const anchor = hash === -1 ? undefined : decodeURIComponent(target.slice(hash + 1))
      const resolved = pathPart === '' ? path : resolve(dirname(path), pathPart)
      if (!existsSync(resolved)) {
        broken.push(`${file}: ${target} (no file ${relative(base, resolved)})`)
        continue
      }
      if (anchor === undefined) continue
      if (!resolved.endsWith('.md') || !statSync(resolved).isFile()) {
        broken.push(`${file}: ${target} (an anchor into a file that is not Markdown)`)
        continue
      }
      const offered = anchors(readFileSync(resolved, 'utf8'))
      if (!offered.has(anchor)) broken.push(`${file}: ${target} (no heading "#${anchor}" in ${relative(base, resolved)})`)
    }
  }
  return { broken, checked }
}

test('every relative link of the Markdown files reaches a file, and every anchor a heading', async (t) => {
  const files = markdownFiles()
  for (const file of files) t.ok(existsSync(join(root, file)), `${file} exists`)
  const { broken, checked } = brokenLinks(root, files)
  t.ok(checked >= 30, `${checked} relative links checked`)
  t.same(broken, [], 'no broken links')
})

test('README.md stays under 20 KB, so a newcomer can scan it', async (t) => {
  const bytes = statSync(join(root, 'README.md')).size
  t.ok(bytes < 20_000, `README.md is ${bytes} bytes`)
})

test('anchors follow GitHub: lowercase, punctuation but - and _ dropped, spaces to -', async (t) => {
  t.equal(slug('Per-route options (`config.resilience`)'), 'per-route-options-configresilience')
  t.equal(slug("What is cockatiel's"), 'what-is-cockatiels')
  t.equal(slug('Pipeline: retry + breaker + timeout'), 'pipeline-retry--breaker--timeout')
  t.equal(slug('Mapping from the Go template (gobreaker)'), 'mapping-from-the-go-template-gobreaker')
  t.equal(slug('snake_case and [a link](x.md)'), 'snake_case-and-a-link')
})

test('the checker reports a missing file, a missing heading, a repeated heading and code that only looks like a link', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'docs-links-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'b.md'), '# Title\n\n## Usage\n\n## Usage\n\n```sh\n# not a heading\n```\n')
  writeFileSync(join(dir, 'a.md'), [
    '# A',
    '[fine](b.md) [fine](b.md#usage) [fine](b.md#usage-1) [fine](#a) [web](https://example.com/nowhere.md)',
    '[missing](c.md) [no heading](b.md#options) [no heading here](#usage) [in a code fence](b.md#not-a-heading)',
    '`[in code](d.md)`',
    '```',
    '[in a fence](e.md)',
    '```',
    '[label]: f.md',
    ''
  ].join('\n'))
  const { broken, checked } = brokenLinks(dir, ['a.md'])
  t.equal(checked, 9, 'web links and code are not checked')
  t.same(broken, [
    'a.md: c.md (no file c.md)',
    'a.md: b.md#options (no heading "#options" in b.md)',
    'a.md: #usage (no heading "#usage" in a.md)',
    'a.md: b.md#not-a-heading (no heading "#not-a-heading" in b.md)',
    'a.md: f.md (no file f.md)'
  ])
})
