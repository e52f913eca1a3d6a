// pnpm bench [--quick] [--systems=a,b] [--only=enqueue,drain,...] [--runs=N] [--issue-sizes]
//
// Runs the selected workloads against the selected systems, each measurement on
// a fresh database of one PostgreSQL server, prints every table as it is done
// and, after a full run, writes BENCHMARKS.md at the repo root.
//
// --quick is the CI smoke check (bench/package.json `test`): tiny sizes, one run,
// no BENCHMARKS.md. It asserts correctness only (every job done exactly once
// where the workload can tell) and exits 1 on any failure; timings never fail it.
//
// Adding a workload: one `workload({...})` entry in WORKLOADS below, with its
// `--only` key, its quick and full sizes, and a run() returning result tables
// (report.ts WorkloadResult). measure() gives each system and run a fresh
// database and collects the runs; medians() turns them into table rows;
// ctx.check() records what must hold (a quick run exits 1 when it does not):
//
//   workload({
//     key: 'retry',
//     fullRuns: 3,
//     sizes: { quick: { jobs: 100 }, full: { jobs: 10_000 } },
//     async run(ctx, size) {
//       const results = await measure(ctx, 'retry', ctx.systems, async (s, db) => {
//         const r = await retryStorm(s, { jobs: size.jobs, url: db.url })
//         ctx.check(r.lost === 0, `${s.name} retry: ${r.lost} jobs lost`)
//         return r
//       })
//       const columns = { 'jobs/s': (r: { jobsPerSec: number }) => r.jobsPerSec }
//       return [{ workload: 'retry', title: `Retry storm: ${size.jobs} jobs`, columns: Object.keys(columns),
//                 rows: medians(results, columns), compare: { 'jobs/s': 'higher' }, notes: [runsNote(ctx)] }]
//     },
//   }),
import { admin, dropLiveDatabases, freshDatabase, serverSettings, serverUrl } from './database.ts'
import { progress, progressContext, progressDone } from './progress.ts'
import { renderTargets, renderWorkload, writeReport, type Cell, type Target, type WorkloadResult } from './report.ts'
import { backroom } from './systems/backroom.ts'
import { graphileDefaults, graphileFast } from './systems/graphile-worker.ts'
import { halfTheSlots, pgBossGroups } from './systems/pg-boss-groups.ts'
import { pgBossDefaults, pgBossFast } from './systems/pg-boss.ts'
import type { BenchSystem } from './systems/system.ts'
import { churn } from './workloads/churn.ts'
import { drain } from './workloads/drain.ts'
import { enqueueBulk, enqueueSingle } from './workloads/enqueue.ts'
import { idleCost } from './workloads/idle-cost.ts'
import { pickupLatency } from './workloads/latency.ts'
import { noisyNeighbour, type NoisyNeighbourResult } from './workloads/noisy-neighbour.ts'
import { pgbenchCeiling } from './workloads/pgbench.ts'
import { scaleHistory, scalePending } from './workloads/scale.ts'

// ---------------------------------------------------------------------------
// Systems

/** A system under test: `name` is the `--systems` name and the row label. */
interface SystemEntry {
  readonly name: string
  readonly make: () => BenchSystem
}

/**
 * Backroom's fastest settings hold up to 500 claimed jobs per worker beyond its
 * slots (WORKER_PREFETCH), like graphile-worker's documented local queue of
 * 500; `backroom-defaults` claims only for free slots.
 */
const BACKROOM_FAST_PREFETCH = 500

const SYSTEMS: ReadonlyArray<SystemEntry> = [
  { name: 'backroom', make: () => backroom({ prefetch: BACKROOM_FAST_PREFETCH }) },
  { name: 'backroom-defaults', make: () => backroom({ name: 'backroom-defaults' }) },
  { name: 'pgboss', make: pgBossFast },
  { name: 'pgboss-defaults', make: pgBossDefaults },
  { name: 'graphile', make: graphileFast },
  { name: 'graphile-defaults', make: graphileDefaults },
]

/**
 * Without --systems: Backroom and each peer in its documented fastest settings.
 * The default-settings variants run only when named: pgboss-defaults polls every
 * 2 s, which caps a drain at concurrency / 2 jobs/s per process (the c=10 p=1
 * quick drain alone would take minutes), and graphile-defaults would add a
 * quarter to a full run that must stay within 30 minutes on 2 cores.
 */
const DEFAULT_SYSTEMS = ['backroom', 'pgboss', 'graphile']

// ---------------------------------------------------------------------------
// Flags

const args = process.argv.slice(2)
const valueOf = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
const listOf = (name: string) => valueOf(name)?.split(',').map((s) => s.trim()).filter(Boolean) ?? null
const quick = args.includes('--quick')
/** The issue's sizes where the default full run trims them to fit in 30 minutes (see FULL_RUN_NOTES). */
const issueSizes = args.includes('--issue-sizes')
const runsFlag = valueOf('runs')
const KNOWN_FLAGS = ['--quick', '--systems=', '--only=', '--runs=', '--issue-sizes']

function usage(message: string): never {
  process.stderr.write(
    `${message}\nusage: pnpm bench [--quick] [--systems=${SYSTEMS.map((s) => s.name).join(',')}] ` +
      `[--only=${WORKLOADS.map((w) => w.key).join(',')}] [--runs=N] [--issue-sizes]\n`,
  )
  process.exit(2)
}

/**
 * What the default full run trims to fit in 30 minutes on 2 cores, and why;
 * printed in BENCHMARKS.md. Per-run times measured on the 2-core machine the
 * bench was written on (3 systems): a 100,000-job drain takes 10-65 s per system
 * and configuration, so ~7 min for the drain table; a noisy-neighbour run ~100 s
 * over its four rows (5 min for 3 runs); enqueue ~1.5 min; an idle-cost
 * measurement ~75 s (systems at once); latency ~20 s a run. The scale points
 * (1M-row fills, 1M pending) and the 100k churn are estimated at ~8 and ~4 min.
 * Together ~28 min; each table in BENCHMARKS.md records its actual time.
 */
const FULL_RUN_NOTES = [
  'The default full run is planned to fit in 30 minutes on 2 cores. Medians of 3 runs everywhere do not: about 70 minutes here ' +
    'even at the trimmed sizes below (estimated from per-run times measured on this machine). So it takes medians of 3 runs where ' +
    'a run is short (noisy neighbour, pick-up latency) and one run elsewhere; each table says which. `--runs=3` takes medians of 3 everywhere.',
  'Trimmed sizes (the issue sizes with `--issue-sizes`): the 10M-row history point runs for Backroom only; ' +
    'the pending-backlog points time a drain of 10,000 jobs out of each backlog instead of the whole backlog; ' +
    'churn runs 100,000 jobs under the held snapshot instead of 1,000,000. At the drain rates measured here (about 2,000-3,000 jobs/s ' +
    'for Backroom and pg-boss at 10 slots) those three add roughly an hour.',
]

// ---------------------------------------------------------------------------
// Measuring

/** What a workload's run() gets. */
interface RunContext {
  readonly quick: boolean
  /** Runs per measurement: 1 in a quick run, the workload's fullRuns (or --runs) otherwise. */
  readonly runs: number
  /** The systems selected with --systems (or the defaults), in order. */
  readonly systems: ReadonlyArray<SystemEntry>
  /** Records a correctness failure unless `ok`; the run then exits 1. */
  check(ok: boolean, message: string): void
}

/** The scratch database a system was set up on. */
interface Scratch {
  readonly url: string
}

const failures: string[] = []
let step = ''

const median = (xs: ReadonlyArray<number>): number => {
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
async function measure<T>(
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
      progressContext(`${step} · ${label} · ${systems.map((s) => s.name).join(' + ')} at once${run}`)
      await Promise.all(systems.map(once))
      continue
    }
    for (const entry of systems) {
      progressContext(`${step} · ${label} · ${entry.name}${run}`)
      await once(entry)
    }
  }
  return out
}

type Row = { system: string; values: Record<string, Cell> }

/** Per system, the median of each measure over its runs ('error' when every run failed). */
function medians<T>(results: Map<string, Array<T | null>>, columns: Record<string, (t: T) => number | null>): Row[] {
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
function firstOk<T>(results: Map<string, Array<T | null>>): Array<[string, T]> {
  return [...results].flatMap(([system, runs]) => {
    const ok = runs.find((r): r is T => r !== null)
    return ok ? [[system, ok] as [string, T]] : []
  })
}

/** Table rows in system order, filled one group of columns at a time. */
function rowsBySystem(systems: ReadonlyArray<SystemEntry>) {
  const rows = new Map<string, Record<string, Cell>>(systems.map((s) => [s.name, {}]))
  return {
    add(more: ReadonlyArray<Row>) {
      for (const row of more) Object.assign(rows.get(row.system) ?? {}, row.values)
    },
    set(system: string, column: string, value: Cell) {
      const row = rows.get(system)
      if (row) row[column] = value
    },
    list: () => [...rows].map(([system, values]) => ({ system, values })),
  }
}

const runsNote = (ctx: RunContext) =>
  ctx.runs > 1 ? `Each cell is the median of ${ctx.runs} runs, each on a fresh database.` : 'One run per cell, on a fresh database.'
const n = (x: number) => x.toLocaleString('en-US')
/** 1,000 → 1k, 10,000,000 → 10M. */
const short = (x: number) => (x >= 1e6 && x % 1e6 === 0 ? `${x / 1e6}M` : x >= 1e3 && x % 1e3 === 0 ? `${x / 1e3}k` : n(x))
/** ANALYZE of the system's database: this server may run with autovacuum off (see ANALYZE_NOTE). */
const analyzeDb = (db: Scratch) => () => admin(db.url, 'analyze')
const ANALYZE_NOTE =
  'The database is ANALYZEd after the enqueue, before the workers start (untimed), as autovacuum would have done on a ' +
  'running server. Without statistics pg-boss plans its fetch as a sort of the whole backlog (measured: 40-50 ms per fetch ' +
  'at 52,000 jobs, under 1 ms analyzed); Backroom forces its index walk either way.'

// ---------------------------------------------------------------------------
// Workloads

interface WorkloadSpec<S> {
  /** The `--only` key. */
  readonly key: string
  readonly sizes: { readonly quick: S; readonly full: S }
  /** Runs per measurement in a full run (medians are reported); default 1, --runs overrides. */
  readonly fullRuns?: number
  run(ctx: RunContext, size: S): Promise<WorkloadResult[]>
}

interface Workload {
  readonly key: string
  run(ctx: Omit<RunContext, 'runs'>): Promise<WorkloadResult[]>
}

function workload<S>(spec: WorkloadSpec<S>): Workload {
  return {
    key: spec.key,
    run(ctx) {
      const runs = ctx.quick ? 1 : runsFlag ? Number(runsFlag) : (spec.fullRuns ?? 1)
      return spec.run({ ...ctx, runs }, ctx.quick ? spec.sizes.quick : spec.sizes.full)
    },
  }
}

const DRAIN_CONFIGS = [
  { concurrency: 10, processes: 1 },
  { concurrency: 50, processes: 1 },
  { concurrency: 10, processes: 4 },
  { concurrency: 50, processes: 4 },
] as const

/** The noisy-neighbour rows for the selected systems: Backroom also as FIFO, pg-boss with group concurrency. */
function noisySystems(selected: ReadonlyArray<SystemEntry>): SystemEntry[] {
  return selected.flatMap((s): SystemEntry[] => {
    if (s.name === 'backroom') {
      return [s, { name: 'backroom-fifo', make: () => backroom({ fifo: true, prefetch: BACKROOM_FAST_PREFETCH }) }]
    }
    if (s.name === 'pgboss') return [{ name: 'pgboss-groups', make: () => pgBossGroups() }]
    return [s]
  })
}

/** Systems whose adapter has the scale hooks (fillFinished, explainFetch). */
function withScaleHooks(selected: ReadonlyArray<SystemEntry>): SystemEntry[] {
  return selected.filter((s) => {
    const probe = s.make()
    return typeof probe.fillFinished === 'function' && typeof probe.explainFetch === 'function'
  })
}

const WORKLOADS: ReadonlyArray<Workload> = [
  workload({
    key: 'enqueue',
    sizes: { quick: { bulk: 2_000, single: 200 }, full: { bulk: 100_000, single: 5_000 } },
    async run(ctx, size) {
      const bulk = await measure(ctx, `bulk enqueue ${n(size.bulk)}`, ctx.systems, (s) => enqueueBulk(s, size.bulk))
      const single = await measure(ctx, `single enqueue ${n(size.single)}`, ctx.systems, (s) => enqueueSingle(s, size.single))
      const bulkCol = `bulk ${n(size.bulk)} (jobs/s)`
      const singleCol = `single ${n(size.single)} (jobs/s)`
      const rows = rowsBySystem(ctx.systems)
      rows.add(medians(bulk, { [bulkCol]: (x) => x }))
      rows.add(medians(single, { [singleCol]: (x) => x }))
      return [
        {
          workload: 'enqueue',
          title: `Enqueue: ${n(size.bulk)} jobs through the bulk API, ${n(size.single)} one at a time`,
          columns: [bulkCol, singleCol],
          rows: rows.list(),
          compare: { [bulkCol]: 'higher', [singleCol]: 'higher' },
          notes: [
            runsNote(ctx),
            'Bulk: chunks of 5,000 jobs per statement in every system. Single: one awaited enqueue after another, one client.',
            'Jobs spread over 100 stores; payload `{ i }`.',
          ],
        },
      ]
    },
  }),

  workload({
    key: 'drain',
    sizes: { quick: { jobs: 1_000, timeoutMs: 120_000 }, full: { jobs: 100_000, timeoutMs: 900_000 } },
    async run(ctx, size) {
      const columns: string[] = []
      const rows = rowsBySystem(ctx.systems)
      for (const { concurrency, processes } of DRAIN_CONFIGS) {
        const label = `drain c=${concurrency} p=${processes}`
        const column = `c=${concurrency} p=${processes} (jobs/s)`
        columns.push(column)
        const results = await measure(ctx, label, ctx.systems, async (s, db) => {
          const r = await drain(s, { n: size.jobs, concurrency, processes, timeoutMs: size.timeoutMs, beforeWorkers: analyzeDb(db) })
          ctx.check(
            r.completed === size.jobs && r.handled === size.jobs && r.anomalies === 0,
            `${s.name} ${label}: expected ${size.jobs} jobs completed and handled once each, got completed=${r.completed} handled=${r.handled} anomalies=${r.anomalies}`,
          )
          return r
        })
        rows.add(medians(results, { [column]: (r) => r.jobsPerSec }))
      }
      return [
        {
          workload: 'drain',
          title: `Drain: ${n(size.jobs)} no-op jobs, c slots per process × p worker processes`,
          columns,
          rows: rows.list(),
          compare: Object.fromEntries(columns.map((c) => [c, 'higher' as const])),
          notes: [
            runsNote(ctx),
            'The jobs are enqueued first (untimed); the clock runs from the workers started to the last completion committed.',
            ANALYZE_NOTE,
            'Each run checks that every job completed and its handler ran exactly once.',
          ],
        },
      ]
    },
  }),

  workload({
    key: 'latency',
    fullRuns: 3,
    sizes: { quick: { count: 20, gapMs: 20 }, full: { count: 200, gapMs: 20 } },
    async run(ctx, size) {
      const results = await measure(ctx, `pick-up latency ${size.count}`, ctx.systems, async (s) => {
        const r = await pickupLatency(s, size)
        ctx.check(r.missed === 0, `${s.name} pick-up latency: ${r.missed} of ${size.count} jobs never started`)
        return r
      })
      const columns = {
        'p50 (ms)': (r: { p50: number }) => r.p50,
        'p95 (ms)': (r: { p95: number }) => r.p95,
        'p99 (ms)': (r: { p99: number }) => r.p99,
        'max (ms)': (r: { max: number }) => r.max,
        missed: (r: { missed: number }) => r.missed,
      }
      return [
        {
          workload: 'latency',
          title: `Pick-up latency: ${size.count} single enqueues ${size.gapMs} ms apart to an idle worker (10 slots)`,
          columns: Object.keys(columns),
          rows: medians(results, columns),
          compare: { 'p50 (ms)': 'lower', 'p95 (ms)': 'lower', 'p99 (ms)': 'lower' },
          notes: [
            runsNote(ctx),
            'Latency = handler start − just before the enqueue call, so the enqueue round trip is included. Nearest-rank percentiles.',
            'missed: jobs not started 5 s after the last enqueue (must be 0).',
          ],
        },
      ]
    },
  }),

  workload({
    key: 'idle',
    sizes: { quick: { seconds: 2 }, full: { seconds: 60 } },
    async run(ctx, size) {
      const results = await measure(
        ctx,
        `idle cost ${size.seconds} s`,
        ctx.systems,
        (s, db) => idleCost(s, { seconds: size.seconds, url: db.url }),
        { concurrent: true },
      )
      const column = 'transactions/min'
      return [
        {
          workload: 'idle',
          title: `Idle cost: transactions per minute against an empty queue, one worker of 10 slots, ${size.seconds} s window`,
          columns: [column],
          rows: medians(results, { [column]: (r) => r.txPerMinute }),
          compare: { [column]: 'lower' },
          notes: [
            runsNote(ctx),
            'Committed + rolled-back transactions of the system\'s own database in pg_stat_database, read from another database; ' +
              'everything that runs there counts (workers, maintenance, the adapter\'s own connections).',
            'The systems idle at the same time, each on its own database (an idle measurement waits, it does not load the machine).',
          ],
        },
      ]
    },
  }),

  workload({
    key: 'scale',
    sizes: {
      quick: {
        history: [{ finished: 5_000, backroomOnly: false }, { finished: 20_000, backroomOnly: false }],
        historyPending: 500,
        pending: [200, 2_000],
        drainJobs: 500,
        concurrency: 10,
      },
      full: {
        history: [{ finished: 1_000_000, backroomOnly: false }, { finished: 10_000_000, backroomOnly: !issueSizes }],
        historyPending: 10_000,
        pending: [1_000, 10_000, 100_000, 1_000_000],
        drainJobs: issueSizes ? Number.POSITIVE_INFINITY : 10_000,
        concurrency: 10,
      },
    },
    async run(ctx, size) {
      const systems = withScaleHooks(ctx.systems)
      const skipped = ctx.systems.filter((s) => !systems.includes(s)).map((s) => s.name)
      const history = rowsBySystem(systems)
      const historyColumns: string[] = []
      const compareHistory: Record<string, 'higher' | 'lower'> = {}
      const appendix: Array<{ summary: string; text: string }> = []
      for (const point of size.history) {
        const pointSystems = point.backroomOnly ? systems.filter((s) => s.name === 'backroom') : systems
        const label = `history ${short(point.finished)}`
        const claimCol = `claim @${short(point.finished)} (ms)`
        const drainCol = `drain @${short(point.finished)} (jobs/s)`
        historyColumns.push(claimCol, drainCol)
        compareHistory[claimCol] = 'lower'
        compareHistory[drainCol] = 'higher'
        const results = await measure(ctx, label, pointSystems, async (s, db) => {
          const r = await scaleHistory(s, {
            finished: point.finished,
            pending: size.historyPending,
            drainJobs: size.historyPending,
            concurrency: size.concurrency,
            url: db.url,
          })
          ctx.check(
            r.drained >= size.historyPending && (r.anomalies ?? 0) === 0,
            `${s.name} ${label}: expected ${size.historyPending} jobs drained without anomalies, got drained=${r.drained} anomalies=${r.anomalies}`,
          )
          return r
        })
        history.add(medians(results, { [claimCol]: (r) => r.claimMs, [drainCol]: (r) => r.drainJobsPerSec }))
        for (const s of systems) if (!pointSystems.includes(s)) history.set(s.name, claimCol, 'not run')
        for (const s of systems) if (!pointSystems.includes(s)) history.set(s.name, drainCol, 'not run')
        for (const [system, r] of firstOk(results)) appendix.push({ summary: `${system}: fetch plan over ${n(point.finished)} finished jobs`, text: r.plan })
      }

      const pending = rowsBySystem(systems)
      const pendingColumns: string[] = []
      const pendingPlans: Array<{ summary: string; text: string }> = []
      const rates = new Map<string, number[]>()
      for (const depth of size.pending) {
        const drainJobs = Math.min(depth, size.drainJobs)
        const label = `pending ${short(depth)}`
        const column = `${short(depth)} pending (jobs/s)`
        pendingColumns.push(column)
        const results = await measure(ctx, label, systems, async (s, db) => {
          const r = await scalePending(s, { pending: depth, concurrency: size.concurrency, drainJobs, url: db.url })
          ctx.check(
            r.drained >= drainJobs && (r.anomalies ?? 0) === 0,
            `${s.name} ${label}: expected at least ${drainJobs} jobs drained without anomalies, got drained=${r.drained} anomalies=${r.anomalies}`,
          )
          return r
        })
        const rows = medians(results, { [column]: (r) => r.drainJobsPerSec })
        pending.add(rows)
        for (const row of rows) rates.set(row.system, [...(rates.get(row.system) ?? []), Number(row.values[column])])
        if (depth === size.pending.at(-1)) {
          const claimCol = `claim @${short(depth)} (ms)`
          pendingColumns.push(claimCol)
          pending.add(medians(results, { [claimCol]: (r) => r.claimMs }))
          for (const [system, r] of firstOk(results)) if (r.plan) pendingPlans.push({ summary: `${system}: fetch plan with ${n(depth)} pending`, text: r.plan })
        }
      }
      const first = short(size.pending[0]!)
      const last = short(size.pending.at(-1)!)
      const keepCol = `${last} ÷ ${first}`
      pendingColumns.push(keepCol)
      for (const [system, r] of rates) pending.set(system, keepCol, r.at(-1)! / r[0]!)
      const skippedNote = skipped.length > 0 ? [`Not run (adapter without fillFinished/explainFetch): ${skipped.join(', ')}.`] : []
      return [
        {
          workload: 'scale',
          title: `Scale, history: fetch and drain over finished history (${size.history.map((p) => short(p.finished)).join(', ')} finished jobs, ${n(size.historyPending)} pending, ${size.concurrency} slots)`,
          columns: historyColumns,
          rows: history.list(),
          compare: compareHistory,
          appendix,
          notes: [
            runsNote(ctx),
            'The history is filled with plain SQL into each system\'s own history/archive (graphile-worker keeps none); then the pending jobs are enqueued, ' +
              'the database ANALYZEd and CHECKPOINTed. claim: median of 5 EXPLAIN ANALYZE of the system\'s own fetch of up to 100 jobs, rolled back. ' +
              `drain: all ${n(size.historyPending)} pending jobs, timed. Plans in the folded sections below.`,
            ...(size.history.some((p) => p.backroomOnly)
              ? ['`not run`: the 10M-row point runs for Backroom only in the default full run (filling 10M rows per peer does not fit in 30 minutes); `--issue-sizes` runs it for every system.']
              : []),
            ...skippedNote,
          ],
        },
        {
          workload: 'scale',
          title: `Scale, backlog: drain rate as the pending backlog grows (${size.pending.map(short).join(', ')} pending, ${size.concurrency} slots)`,
          columns: pendingColumns,
          rows: pending.list(),
          compare: Object.fromEntries([...pendingColumns.filter((c) => c.endsWith('(jobs/s)')).map((c) => [c, 'higher' as const]), [keepCol, 'higher' as const]]),
          appendix: pendingPlans,
          notes: [
            runsNote(ctx),
            Number.isFinite(size.drainJobs)
              ? `Each backlog is enqueued and ANALYZEd (untimed), then the first ${n(size.drainJobs)} jobs (or all, when fewer) are drained, timed.`
              : 'Each backlog is enqueued and ANALYZEd (untimed), then drained whole, timed.',
            `${keepCol}: jobs/s at the deepest backlog over jobs/s at the shallowest (1 = no slow-down).`,
            ...skippedNote,
          ],
        },
      ]
    },
  }),

  workload({
    key: 'noisy',
    fullRuns: 3,
    sizes: {
      quick: { bigJobs: 2_000, smallStores: 10, perSmallStore: 10, concurrency: 10, timeoutMs: 120_000 },
      full: { bigJobs: 50_000, smallStores: 200, perSmallStore: 10, concurrency: 10, timeoutMs: 900_000 },
    },
    async run(ctx, size) {
      const systems = noisySystems(ctx.systems)
      const total = size.bigJobs + size.smallStores * size.perSmallStore
      const results = await measure(ctx, 'noisy neighbour', systems, async (s, db) => {
        const r = await noisyNeighbour(s, { ...size, beforeWorkers: analyzeDb(db) })
        ctx.check(
          r.completed === total && r.handled === total && r.duplicates === 0 && r.missing === 0 && r.anomalies === 0,
          `${s.name} noisy neighbour: expected ${total} jobs completed and handled once each, got completed=${r.completed} handled=${r.handled} duplicates=${r.duplicates} missing=${r.missing} anomalies=${r.anomalies}`,
        )
        return r
      })
      const columns = {
        'small p50 wait (ms)': (r: { smallWaitP50Ms: number }) => r.smallWaitP50Ms,
        'small p99 wait (ms)': (r: { smallWaitP99Ms: number }) => r.smallWaitP99Ms,
        'big p50 wait (ms)': (r: { bigWaitP50Ms: number }) => r.bigWaitP50Ms,
        'total (ms)': (r: { totalMs: number }) => r.totalMs,
        'jobs/s': (r: { jobsPerSec: number }) => r.jobsPerSec,
      }
      const targets: Target[] = []
      const fair = results.get('backroom')
      const fifo = results.get('backroom-fifo')
      if (fair && fifo) {
        // Both targets compare Backroom with its FIFO self run by run, then take the median.
        const pairs = fair.flatMap((f, i) => (f && fifo[i] ? [[f, fifo[i]!] as const] : []))
        const p99 = median(pairs.map(([f, o]) => f.smallWaitP99Ms / o.smallWaitP99Ms))
        const rate = median(pairs.map(([f, o]) => f.jobsPerSec / o.jobsPerSec))
        const fairRow = medians(new Map([['backroom', fair]]), columns)[0]!.values
        const fifoRow = medians(new Map([['backroom-fifo', fifo]]), columns)[0]!.values
        const perRun = (pick: (f: NoisyNeighbourResult, o: NoisyNeighbourResult) => number) =>
          pairs.length > 1 ? `; median of the runs' ratios ${pairs.map(([f, o]) => pick(f, o).toFixed(3)).join(', ')}` : ''
        targets.push(
          {
            name: "Noisy neighbour: small stores' p99 wait, Backroom vs the same engine in FIFO order",
            goal: '≤ 0.10× FIFO',
            measured: `${p99.toFixed(3)}× (${cellText(fairRow['small p99 wait (ms)'])} ms vs ${cellText(fifoRow['small p99 wait (ms)'])} ms${perRun((f, o) => f.smallWaitP99Ms / o.smallWaitP99Ms)})`,
            met: p99 <= 0.1,
          },
          {
            name: 'Noisy neighbour: total throughput, Backroom vs the same engine in FIFO order',
            goal: '≥ 0.90× FIFO',
            measured: `${rate.toFixed(3)}× (${cellText(fairRow['jobs/s'])} vs ${cellText(fifoRow['jobs/s'])} jobs/s${perRun((f, o) => f.jobsPerSec / o.jobsPerSec)})`,
            met: rate >= 0.9,
          },
        )
      }
      return [
        {
          workload: 'noisy',
          title:
            `Noisy neighbour: one store enqueues ${n(size.bigJobs)} jobs, then ${n(size.smallStores)} stores ` +
            `${n(size.perSmallStore)} each; 1 worker process, ${size.concurrency} slots`,
          columns: Object.keys(columns),
          rows: medians(results, columns),
          compare: { 'small p50 wait (ms)': 'lower', 'small p99 wait (ms)': 'lower', 'jobs/s': 'higher' },
          targets,
          notes: [
            runsNote(ctx),
            'Wait = handler start − enqueue time (`sentAt` in the payload, taken just before that store’s bulk enqueue). ' +
              'All jobs are enqueued before the workers start, so every wait includes the rest of the enqueue. Nearest-rank percentiles. ' +
              'total: workers started to the last completion committed; jobs/s = all jobs / total.',
            '`backroom`: fair claim order between stores. `backroom-fifo`: the same engine with fairness defeated ' +
              '(every job under one store id, the real store kept in the payload), i.e. plain FIFO.',
            '`graphile`: graphile-worker (fast settings), plain FIFO: it has no per-store fairness.',
            `\`pgboss-groups\`: pg-boss's nearest feature, group concurrency: every job sent with \`group: { id: store }\`, and the worker ` +
              `capped at \`groupConcurrency: ${halfTheSlots(size.concurrency)}\` jobs per store (half its ${size.concurrency} slots), ` +
              `run as 2 fetchers of batchSize ${Math.floor(size.concurrency / 2)} (the cap only binds across fetchers holding jobs at once). ` +
              'A cap on one store, not a fair share: claim order stays creation order, and with no-op handlers jobs are active only briefly, ' +
              'so the cap binds less often than with real work. See bench/src/systems/pg-boss-groups.ts.',
            ANALYZE_NOTE,
            'Each run checks that every job completed and its handler ran exactly once.',
          ],
        },
      ]
    },
  }),

  workload({
    key: 'churn',
    sizes: { quick: { jobs: 2_000, concurrency: 10 }, full: { jobs: issueSizes ? 1_000_000 : 100_000, concurrency: 10 } },
    async run(ctx, size) {
      const systems = withScaleHooks(ctx.systems)
      const results = await measure(ctx, `churn ${short(size.jobs)}`, systems, async (s, db) => {
        const r = await churn(s, { jobs: size.jobs, concurrency: size.concurrency, url: db.url })
        ctx.check(r.anomalies === 0, `${s.name} churn: ${r.anomalies} anomalies (jobs run more than once or not completed)`)
        return r
      })
      const columns = {
        'fresh claim (ms)': (r: { freshClaimMs: number }) => r.freshClaimMs,
        'churned claim (ms)': (r: { churnedClaimMs: number }) => r.churnedClaimMs,
        'fresh (jobs/s)': (r: { freshJobsPerSec: number }) => r.freshJobsPerSec,
        'during churn (jobs/s)': (r: { duringChurnJobsPerSec: number }) => r.duringChurnJobsPerSec,
        'churned (jobs/s)': (r: { churnedJobsPerSec: number }) => r.churnedJobsPerSec,
        'churned ÷ fresh': (r: { churnedJobsPerSec: number; freshJobsPerSec: number }) => r.churnedJobsPerSec / r.freshJobsPerSec,
      }
      const appendix = firstOk(results).flatMap(([system, r]) => [
        { summary: `${system}: fetch plan, fresh`, text: r.freshPlan },
        { summary: `${system}: fetch plan after the churn, snapshot held`, text: r.churnedPlan },
      ])
      return [
        {
          workload: 'churn',
          title: `Churn: ${n(size.jobs)} jobs drained under a held snapshot (${size.concurrency} slots)`,
          columns: Object.keys(columns),
          rows: medians(results, columns),
          compare: { 'churned claim (ms)': 'lower', 'during churn (jobs/s)': 'higher', 'churned (jobs/s)': 'higher', 'churned ÷ fresh': 'higher' },
          appendix,
          notes: [
            runsNote(ctx),
            'A REPEATABLE READ transaction on another connection holds its snapshot while the jobs are enqueued and drained, so no dead row version ' +
              'can be vacuumed. fresh/churned: a sample drain (10% of the jobs) and the median of 5 fetch EXPLAIN ANALYZE before the churn and after it, snapshot still held.',
          ],
        },
      ]
    },
  }),

  workload({
    key: 'pgbench',
    sizes: { quick: { clients: 8, seconds: 2 }, full: { clients: 8, seconds: 30 } },
    async run(ctx, size) {
      const runs: Array<Awaited<ReturnType<typeof pgbenchCeiling>>> = []
      for (let r = 0; r < ctx.runs; r++) {
        progressContext(`${step} · pgbench ${size.clients} clients${ctx.runs > 1 ? ` run ${r + 1}/${ctx.runs}` : ''}`)
        try {
          runs.push(await pgbenchCeiling({ url: serverUrl(), clients: size.clients, seconds: size.seconds }))
        } catch (error) {
          ctx.check(false, `pgbench: ${(error as Error).message}`)
        }
      }
      const last = runs.at(-1)
      return [
        {
          workload: 'pgbench',
          title: `Server ceiling: pgbench, ${size.clients} clients, ${size.seconds} s, one single-row update per transaction`,
          columns: ['transactions/s', 'latency (ms)'],
          rows: [
            {
              system: 'PostgreSQL (pgbench)',
              values: runs.length === 0
                ? { 'transactions/s': 'error', 'latency (ms)': 'error' }
                : { 'transactions/s': median(runs.map((r) => r.tps)), 'latency (ms)': median(runs.map((r) => r.latencyMs)) },
            },
          ],
          notes: [
            runsNote(ctx),
            'Every queue here spends at least one commit per job or per batch, so this bounds the jobs/s of one-commit-per-job paths.',
            ...(last
              ? [
                  `Command: \`${last.command}\`.`,
                  `Settings: ${Object.entries(last.settings).map(([k, v]) => `${k}=${v}`).join(', ')}.`,
                ]
              : []),
          ],
        },
      ]
    },
  }),
]

function cellText(value: Cell | undefined): string {
  return typeof value === 'number' ? Math.round(value).toLocaleString('en-US') : String(value ?? '—')
}

// ---------------------------------------------------------------------------
// Main

function selectSystems(): SystemEntry[] {
  const wanted = listOf('systems')
  const unknown = wanted?.filter((w) => !SYSTEMS.some((s) => s.name === w)) ?? []
  if (unknown.length > 0) usage(`unknown system(s) ${unknown.join(', ')}`)
  return SYSTEMS.filter((s) => (wanted ?? DEFAULT_SYSTEMS).includes(s.name))
}

function selectWorkloads(): Workload[] {
  const wanted = listOf('only')
  const unknown = wanted?.filter((w) => !WORKLOADS.some((x) => x.key === w)) ?? []
  if (unknown.length > 0) usage(`unknown workload(s) ${unknown.join(', ')}`)
  return WORKLOADS.filter((w) => !wanted || wanted.includes(w.key))
}

async function main(): Promise<void> {
  const strange = args.filter((a) => !KNOWN_FLAGS.some((f) => (f.endsWith('=') ? a.startsWith(f) : a === f)))
  if (strange.length > 0) usage(`unknown argument(s) ${strange.join(' ')}`)
  if (runsFlag !== undefined && !(Number.isInteger(Number(runsFlag)) && Number(runsFlag) >= 1)) usage(`--runs needs a whole number ≥ 1`)
  const systems = selectSystems()
  const workloads = selectWorkloads()
  const started = performance.now()
  const date = new Date()
  const results: WorkloadResult[] = []
  const ctx: Omit<RunContext, 'runs'> = {
    quick,
    systems,
    check(ok, message) {
      if (!ok) failures.push(message)
    },
  }
  const server = serverUrl()
  // Read first: an unreachable server fails here, with its address, before any workload.
  let settings: Record<string, string>
  try {
    settings = await serverSettings(server)
  } catch (error) {
    throw new Error(`cannot reach PostgreSQL at ${new URL(server).host} (BENCH_DATABASE_URL, TEST_DATABASE_URL or DATABASE_URL): ${(error as Error).message}`)
  }
  process.stdout.write(
    `${quick ? 'Quick run (CI smoke check: correctness only)' : 'Full run'}: ${workloads.map((w) => w.key).join(', ')} ` +
      `on ${systems.map((s) => s.name).join(', ')}; server ${new URL(server).host}\n`,
  )
  for (const [i, w] of workloads.entries()) {
    step = `[${i + 1}/${workloads.length}] ${w.key}`
    progressContext(step)
    const t0 = performance.now()
    const tables = await w.run(ctx)
    const durationMs = performance.now() - t0
    progressDone()
    for (const t of tables) process.stdout.write(`\n${renderWorkload(t)}\n`)
    process.stdout.write(`\n(${w.key}: ${(durationMs / 1000).toFixed(0)} s)\n`)
    // The workload's time goes under its last table.
    results.push(...tables.map((t, k) => (k === tables.length - 1 ? { ...t, durationMs } : t)))
  }
  const targets = renderTargets(results)
  if (targets) process.stdout.write(`\n### Targets${quick ? ' (informational: a quick run never fails on timings)' : ''}\n\n${targets}\n`)
  process.stdout.write(
    `\nPostgreSQL ${settings.server_version}; fsync=${settings.fsync}; synchronous_commit=${settings.synchronous_commit}; shared_buffers=${settings.shared_buffers}\n`,
  )
  if (!quick) {
    const path = await writeReport(
      {
        date,
        command: ['pnpm bench', ...args].join(' '),
        quick,
        postgres: settings,
        durationMs: performance.now() - started,
        failures,
        notes: [
          `Systems: ${systems.map((s) => `\`${s.name}\``).join(', ')}. Peer settings and how each adapter counts completed jobs: the file comments of \`bench/src/systems/*.ts\`.`,
          'Every measurement runs on a fresh database; with several runs, run-major (run 1 of every system, then run 2, ...). The number of runs is under each table.',
          ...(issueSizes ? ['Run with `--issue-sizes`: the issue\'s sizes throughout.'] : FULL_RUN_NOTES),
          ...(runsFlag ? [`Run with \`--runs=${runsFlag}\`: ${runsFlag} runs per measurement everywhere.`] : []),
        ],
      },
      results,
    )
    process.stdout.write(`\nwrote ${path}\n`)
  }
  process.stdout.write(`\ntook ${((performance.now() - started) / 1000).toFixed(0)} s\n`)
  if (failures.length > 0) {
    process.stderr.write(`\nCORRECTNESS FAILURES (${failures.length}):\n${failures.map((f) => `- ${f}`).join('\n')}\n`)
    process.exit(1)
  }
  process.stdout.write(quick ? 'all correctness checks passed\n' : '')
}

process.once('SIGINT', () => {
  progressDone()
  process.stderr.write('\ninterrupted: dropping scratch databases\n')
  void dropLiveDatabases().finally(() => process.exit(130))
})

try {
  await main()
  // Peers' pools and timers may linger after close(); the run is over.
  process.exit(process.exitCode ?? 0)
} catch (error) {
  progressDone()
  process.stderr.write(`\nbench failed: ${(error as Error).message}\n${(error as Error).stack ?? ''}\n`)
  await dropLiveDatabases()
  process.exit(1)
}
