// Result tables and BENCHMARKS.md. Every workload hands back WorkloadResult
// tables; the report only formats them, so a new workload needs nothing here.
import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import os from 'node:os'
import { fileURLToPath } from 'node:url'

/** One cell: a measured number, or text (`error`, a plan, a setting). */
export type Cell = number | string

/** A goal of Backroom's, checked against a measurement. */
export interface Target {
  /** What is measured, e.g. `noisy neighbour: small stores' p99 wait vs FIFO`. */
  readonly name: string
  /** The measured value, formatted with its unit. */
  readonly measured: string
  /** The goal, e.g. `≤ 0.10× FIFO`. */
  readonly goal: string
  readonly met: boolean
  /** When missed: what limits it, as measured. */
  readonly why?: string
}

/** One table of one workload: rows are systems (or variants), columns the measures. */
export interface WorkloadResult {
  /** The workload's key, as `--only` takes it (`drain`, `noisy`, ...). */
  readonly workload: string
  /** Heading of the table, with its sizes. */
  readonly title: string
  /** Column names in order, units included (`jobs/s`, `p99 (ms)`). */
  readonly columns: ReadonlyArray<string>
  readonly rows: ReadonlyArray<{ readonly system: string; readonly values: Readonly<Record<string, Cell>> }>
  /** Lines printed under the table: settings, method, caveats. */
  readonly notes?: ReadonlyArray<string>
  /**
   * Columns where systems compete, and which way is better; the report adds a
   * "Backroom ÷ peer" table for them. Omit for tables that compare nothing.
   */
  readonly compare?: Readonly<Record<string, 'higher' | 'lower'>>
  /** The row the ratios divide (default `backroom`). */
  readonly baseline?: string
  /** Backroom's targets this table checks. */
  readonly targets?: ReadonlyArray<Target>
  /** Long texts (query plans) shown folded under the table in BENCHMARKS.md, not on stdout. */
  readonly appendix?: ReadonlyArray<{ readonly summary: string; readonly text: string }>
  /** How long the workload took, ms (set by the runner). */
  readonly durationMs?: number
}

/** Where and how the numbers were taken. */
export interface ReportMeta {
  readonly date: Date
  /** The command that reproduces the run, from the repo root. */
  readonly command: string
  readonly quick: boolean
  /** `SHOW` values from serverSettings(). */
  readonly postgres: Readonly<Record<string, string>>
  readonly durationMs: number
  /** Method notes (runs, medians, choices made to fit the time budget). */
  readonly notes?: ReadonlyArray<string>
  /** Correctness failures of the run (empty when every check passed). */
  readonly failures: ReadonlyArray<string>
}

/** The file a full run writes: BENCHMARKS.md at the repo root. */
export const REPORT_PATH = fileURLToPath(new URL('../../BENCHMARKS.md', import.meta.url))

/** Formats a number for a table: thousands separators, fewer decimals as it grows. */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return '—'
  const abs = Math.abs(value)
  const digits = Number.isInteger(value) || abs >= 100 ? 0 : abs >= 10 ? 1 : 2
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

function cell(value: Cell | undefined): string {
  if (value === undefined) return '—'
  if (typeof value === 'number') return formatNumber(value)
  return value.replace(/\|/g, '\\|').replace(/\n/g, '<br>')
}

function markdownTable(header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>, numeric = true): string {
  const align = header.map((_, i) => (i === 0 || !numeric ? '---' : '---:'))
  return [header, align, ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n')
}

/** Backroom ÷ each other row, for the compared columns; null when nothing compares. */
export function ratioTable(result: WorkloadResult): string | null {
  const compare = result.compare
  if (!compare) return null
  const columns = result.columns.filter((c) => c in compare)
  const baselineName = result.baseline ?? 'backroom'
  const baseline = result.rows.find((r) => r.system === baselineName)
  const others = result.rows.filter((r) => r.system !== baselineName)
  if (!baseline || others.length === 0 || columns.length === 0) return null
  const rows = others.map((peer) => [
    `${baselineName} ÷ ${peer.system}`,
    ...columns.map((c) => {
      const a = baseline.values[c]
      const b = peer.values[c]
      if (typeof a !== 'number' || typeof b !== 'number' || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return '—'
      const ratio = a / b
      const better = compare[c] === 'higher' ? ratio > 1 : ratio < 1
      const verdict = Math.abs(ratio - 1) < 0.005 ? 'even' : better ? 'better' : 'worse'
      return `${ratio.toFixed(ratio >= 10 ? 1 : 2)}× (${verdict})`
    }),
  ])
  return markdownTable(['', ...columns.map((c) => `${c} ${compare[c] === 'higher' ? '↑' : '↓'}`)], rows)
}

/** One workload's table, ratios and notes, as markdown; the appendix only with `appendix`. */
export function renderWorkload(result: WorkloadResult, { level = '###', appendix = false } = {}): string {
  const parts = [`${level} ${result.title}`, '']
  const rows = result.rows.map((r) => [r.system, ...result.columns.map((c) => cell(r.values[c]))])
  parts.push(markdownTable(['system', ...result.columns], rows))
  const ratios = ratioTable(result)
  if (ratios) {
    parts.push('', 'Backroom ÷ peer (↑ higher is better, ↓ lower is better):', '', ratios)
  }
  const notes = [...(result.notes ?? [])]
  if (result.durationMs !== undefined) notes.push(`This workload took ${(result.durationMs / 60_000).toFixed(1)} minutes.`)
  if (notes.length > 0) parts.push('', ...notes.map((n) => `- ${n}`))
  if (appendix) {
    for (const a of result.appendix ?? []) {
      parts.push('', `<details><summary>${a.summary}</summary>`, '', '```', a.text.trimEnd(), '```', '', '</details>')
    }
  }
  return parts.join('\n')
}

/** Every target of every result, as a markdown table; null when there are none. */
export function renderTargets(results: ReadonlyArray<WorkloadResult>): string | null {
  const targets = results.flatMap((r) => r.targets ?? [])
  if (targets.length === 0) return null
  const table = markdownTable(
    ['target', 'goal', 'measured', 'met'],
    targets.map((t) => [cell(t.name), cell(t.goal), cell(t.measured), t.met ? 'met' : '**not met**']),
    false,
  )
  const missed = targets.filter((t) => !t.met && t.why)
  if (missed.length === 0) return table
  return [table, '', 'Why the missed targets are missed (profiled on this kind of machine):', '', ...missed.map((t) => `- ${t.name}: ${t.why}`)].join('\n')
}

/** The machine the run took place on. */
export function machine(): { cpus: number; cpuModel: string; memoryGiB: number; platform: string } {
  const cpus = os.cpus()
  return {
    cpus: typeof os.availableParallelism === 'function' ? os.availableParallelism() : cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
  }
}

/** Installed version of a bench dependency (the peers), read from its package.json. */
export function packageVersion(name: string): string {
  try {
    const path = fileURLToPath(new URL(`../node_modules/${name}/package.json`, import.meta.url))
    return (JSON.parse(readFileSync(path, 'utf8')) as { version?: string }).version ?? 'unknown'
  } catch {
    return 'unknown'
  }
}

function settingsLine(pgSettings: Readonly<Record<string, string>>): string {
  const keys = ['fsync', 'synchronous_commit', 'shared_buffers', 'max_connections', 'full_page_writes']
  return keys.filter((k) => k in pgSettings).map((k) => `${k}=${pgSettings[k]}`).join(', ')
}

/** The whole BENCHMARKS.md. */
export function renderReport(meta: ReportMeta, results: ReadonlyArray<WorkloadResult>): string {
  const m = machine()
  const minutes = (meta.durationMs / 60_000).toFixed(1)
  const lines: string[] = [
    '# Benchmarks',
    '',
    `Backroom against pg-boss ${packageVersion('pg-boss')} and graphile-worker ${packageVersion('graphile-worker')}, ` +
      `each on a fresh database of the same PostgreSQL server. Generated by \`pnpm bench\` on ` +
      `${meta.date.toISOString().slice(0, 10)} (${meta.date.toISOString()}); the run took ${minutes} minutes.`,
    '',
    'To rerun, from the repository root (PostgreSQL from `BENCH_DATABASE_URL`, else `TEST_DATABASE_URL`, else `DATABASE_URL`, else `postgres://postgres@127.0.0.1:5432/postgres`):',
    '',
    '```sh',
    meta.command,
    '```',
    '',
    '## Setup',
    '',
    `- Machine: ${m.cpus} cores (${m.cpuModel}), ${m.memoryGiB} GiB memory, ${m.platform}.`,
    `- Node.js ${process.version}.`,
    `- PostgreSQL ${meta.postgres.server_version ?? 'unknown'}: ${settingsLine(meta.postgres)}.`,
    '- The database server and every worker share the machine.',
    ...(meta.notes ?? []).map((n) => `- ${n}`),
    '',
  ]
  const targets = renderTargets(results)
  lines.push('## Targets', '')
  lines.push(targets ?? 'No workload in this run checks a target.', '')
  lines.push('## Correctness', '')
  lines.push(
    meta.failures.length === 0
      ? 'Every check passed: where a workload can tell, every job ran exactly once and completed.'
      : ['Failed checks (details in the run\'s output):', '', ...meta.failures.map((f) => `- ${f.split('\n')[0]}`)].join('\n'),
    '',
  )
  lines.push('## Results', '')
  for (const r of results) lines.push(renderWorkload(r, { appendix: true }), '')
  return `${lines.join('\n').trimEnd()}\n`
}

/** Writes BENCHMARKS.md; returns its path. */
export async function writeReport(meta: ReportMeta, results: ReadonlyArray<WorkloadResult>, path = REPORT_PATH): Promise<string> {
  await writeFile(path, renderReport(meta, results))
  return path
}
