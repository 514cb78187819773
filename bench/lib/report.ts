/** What each benchmark hands back to `bench/run.ts`, which writes `bench/RESULTS.md`. */

/** Options every benchmark receives. */
export interface BenchOptions {
  /** Run for a second or two and judge nothing: the test suite's check that the benchmarks still run. */
  smoke: boolean
  /** Progress lines for the console (not written to RESULTS.md). */
  log: (line: string) => void
}

/** One benchmark's part of RESULTS.md. */
export interface Section {
  /** Heading, e.g. `Overhead`. */
  title: string
  /** The command that reproduces this section alone. */
  command: string
  /** Markdown body: setup, tables, targets met or missed (no heading). */
  markdown: string
  /** Charts to write next to RESULTS.md (file name → SVG text), referenced from `markdown`. */
  charts: Record<string, string>
  /** Headline lines for the console and the README, e.g. `suite/bare throughput 97 %`. */
  headlines: string[]
}

/** A markdown table; cells are written as given. */
export function table (header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n')
}

/** `**met**` or `**missed**`, for target lines. */
export function verdict (met: boolean): string {
  return met ? '**met**' : '**missed**'
}
