// What every suite uses to measure: the run context, fresh databases per
// system and run, medians, and the row helpers of the result tables.
import { admin, freshDatabase } from './database.ts'
import { progress, progressContext } from './progress.ts'
import type { Cell, WorkloadResult } from './report.ts'
import type { BenchSystem } from './systems/system.ts'

/** A system under test: `name` is the `--systems` name and the row label. */
export interface SystemEntry {
  readonly name: string
  readonly make: () => BenchSystem
}

/** What a suite's run() gets. */
export interface RunContext {
  readonly quick: boolean
  /** Runs per measurement: 1 in a quick run, the suite's fullRuns (or --runs) otherwise. */
  readonly runs: number
  /** The systems selected with --systems (or the defaults), in order. */
  readonly systems: ReadonlyArray<SystemEntry>
  /** The status-line prefix of the running suite, e.g. `[2/8] drain`. */
  readonly step: string
  /** Records a correctness failure unless `ok`; the run then exits 1. */
  check(ok: boolean, message: string): void
}

/** The scratch database a system was set up on. */
export interface Scratch {
  readonly url: string
}

/** Sizes of a suite: small for --quick, the default full run, and the issue's own where the full run trims them. */
export interface Sizes<S> {
  readonly quick: S
  readonly full: S
  /** With --issue-sizes (default: `full`). */
  readonly issue?: S
}

/** How a suite is declared (see run.ts for the registry). */
export interface SuiteSpec<S> {
  /** The `--only` key. */
  readonly key: string
  readonly sizes: Sizes<S>
  /** Runs per measurement in a full run (medians are reported); default 1, --runs overrides. */
  readonly fullRuns?: number
  run(ctx: RunContext, size: S): Promise<WorkloadResult[]>
}

/** A suite ready to run: the runner picks sizes and run counts from the flags. */
export interface Suite {
  readonly key: string
  run(ctx: Omit<RunContext, 'runs'>, flags: { readonly issueSizes: boolean; readonly runs: number | null }): Promise<WorkloadResult[]>
}

/** Declares a suite. */
export function suite<S>(spec: SuiteSpec<S>): Suite {
  return {
    key: spec.key,
    run(ctx, flags) {
      const runs = ctx.quick ? 1 : (flags.runs ?? spec.fullRuns ?? 1)
      const size = ctx.quick ? spec.sizes.quick : flags.issueSizes ? (spec.sizes.issue ?? spec.sizes.full) : spec.sizes.full
      return spec.run({ ...ctx, runs }, size)
    },
  }
}

/** Median of the finite values; NaN when there are none. */
export const median = (xs: ReadonlyArray<number>): number => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b)
  if (s.length === 0) return Number.NaN
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

/** Sets up `entry` on a fresh database, runs `fn`, tears everything down. */
async function withSystem<T>(entry: SystemEntry, fn: (s: BenchSystem, db: Scratch) => Promise<T>): Promise<T> {
  const system = entry.make()
  const db = await freshDatabase(entry.name)
  try {
    progress(`${entry.name}: setup`)
    await system.setup(db.url)
    return await fn(system, db)
  } finally {
    progress(`${entry.name}: teardown`)
    await system.close()
    await db.drop()
  }
}

/**
 * Runs `fn` once per system and run, each on a fresh database, run-major (run 1
 * of every system, then run 2, ...) so that drift of the machine spreads over
 * all systems; with `concurrent`, the systems of one run at the same time (for
 * workloads that wait rather than work, like idle cost). A run that throws is
 * recorded as a failure and kept as null.
 */
export async function measure<T>(
  ctx: RunContext,
  label: string,
  systems: ReadonlyArray<SystemEntry>,
  fn: (s: BenchSystem, db: Scratch) => Promise<T>,
  { concurrent = false } = {},
): Promise<Map<string, Array<T | null>>> {
  const out = new Map<string, Array<T | null>>(systems.map((s) => [s.name, []]))
  const once = async (entry: SystemEntry) => {
    try {
      out.get(entry.name)!.push(await withSystem(entry, fn))
    } catch (error) {
      ctx.check(false, `${label} on ${entry.name}: ${(error as Error).stack ?? String(error)}`)
      out.get(entry.name)!.push(null)
    }
  }
  for (let r = 0; r < ctx.runs; r++) {
    const run = ctx.runs > 1 ? ` run ${r + 1}/${ctx.runs}` : ''
    if (concurrent) {
      progressContext(`${ctx.step} · ${label} · ${systems.map((s) => s.name).join(' + ')} at once${run}`)
      await Promise.all(systems.map(once))
      continue
    }
    for (const entry of systems) {
      progressContext(`${ctx.step} · ${label} · ${entry.name}${run}`)
      await once(entry)
    }
  }
  return out
}

/** One table row: a system and its cells. */
export type Row = { system: string; values: Record<string, Cell> }

/** Per system, the median of each measure over its runs ('error' when every run failed). */
export function medians<T>(results: Map<string, Array<T | null>>, columns: Record<string, (t: T) => number | null>): Row[] {
  return [...results].map(([system, runs]) => {
    const ok = runs.filter((r): r is T => r !== null)
    const values: Record<string, Cell> = {}
    for (const [column, pick] of Object.entries(columns)) {
      values[column] = ok.length === 0 ? 'error' : median(ok.map((r) => pick(r) ?? Number.NaN))
    }
    return { system, values }
  })
}

/** The first successful run of each system (for texts such as plans, which have no median). */
export function firstOk<T>(results: Map<string, Array<T | null>>): Array<[string, T]> {
  return [...results].flatMap(([system, runs]) => {
    const ok = runs.find((r): r is T => r !== null)
    return ok ? [[system, ok] as [string, T]] : []
  })
}

/** Table rows in system order, filled one group of columns at a time. */
export function rowsBySystem(systems: ReadonlyArray<SystemEntry>) {
  const rows = new Map<string, Record<string, Cell>>(systems.map((s) => [s.name, {}]))
  return {
    add(more: ReadonlyArray<Row>) {
      for (const row of more) Object.assign(rows.get(row.system) ?? {}, row.values)
    },
    set(system: string, column: string, value: Cell) {
      const row = rows.get(system)
      if (row) row[column] = value
    },
    list: (): Row[] => [...rows].map(([system, values]) => ({ system, values })),
  }
}

/** The number of a cell, or NaN when it holds text ('error', 'not run'). */
export const num = (rows: ReadonlyArray<Row>, system: string, column: string): number => {
  const v = rows.find((r) => r.system === system)?.values[column]
  return typeof v === 'number' ? v : Number.NaN
}

export const runsNote = (ctx: RunContext) =>
  ctx.runs > 1 ? `Each cell is the median of ${ctx.runs} runs, each on a fresh database.` : 'One run per cell, on a fresh database.'
/** 1000000 → 1,000,000. */
export const n = (x: number) => x.toLocaleString('en-US')
/** 1,000 → 1k, 10,000,000 → 10M. */
export const short = (x: number) => (x >= 1e6 && x % 1e6 === 0 ? `${x / 1e6}M` : x >= 1e3 && x % 1e3 === 0 ? `${x / 1e3}k` : n(x))
/** A number for a sentence: whole above 100, 2 decimals below. */
export const fmt = (x: number) => (!Number.isFinite(x) ? 'n/a' : Math.abs(x) >= 100 ? n(Math.round(x)) : x.toFixed(2))
/** ANALYZE of the system's database: this server may run with autovacuum off (see ANALYZE_NOTE). */
export const analyzeDb = (db: Scratch) => () => admin(db.url, 'analyze')
export const ANALYZE_NOTE =
  'The database is ANALYZEd after the enqueue, before the workers start (untimed), as autovacuum would have done on a ' +
  'running server. Without statistics pg-boss plans its fetch as a sort of the whole backlog (measured: 40-50 ms per fetch ' +
  'at 52,000 jobs, under 1 ms analyzed); Backroom forces its index walk either way.'
