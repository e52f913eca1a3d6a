// Measuring blocks shared by the scale and churn workloads: chunked enqueue,
// ANALYZE/VACUUM, median-of-N EXPLAIN of the system's fetch, a drain timed
// without loading the server it measures, and dead-tuple statistics.
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { progress } from '../progress.ts'
import type { BenchJob, BenchSystem } from '../systems/system.ts'

/** Jobs per enqueueBulk call: bounds memory at 1M+ pending (the adapters chunk further). */
const ENQUEUE_CHUNK = 100_000

/** The system's database: `url` if given, else `system.url`; the workloads read and hold connections on it. */
export function databaseUrl(system: BenchSystem, url?: string): string {
  const resolved = url ?? system.url
  if (!resolved) throw new Error(`${system.name}: pass opts.url (the adapter does not expose the database it was set up on)`)
  return resolved
}

/** The scale hooks, or a clear error when an adapter lacks them. */
export function scaleHooks(system: BenchSystem): {
  fillFinished: (n: number) => Promise<void>
  explainFetch: () => Promise<{ readonly ms: number; readonly plan: string }>
} {
  if (!system.fillFinished || !system.explainFetch) throw new Error(`${system.name} does not implement fillFinished/explainFetch`)
  return { fillFinished: system.fillFinished.bind(system), explainFetch: system.explainFetch.bind(system) }
}

/**
 * Enqueues `n` bench jobs (100 stores, payload `{ i }`, as makeJobs) in chunks,
 * numbering from `offset` so payloads stay distinct across calls.
 */
export async function enqueueChunked(system: BenchSystem, n: number, offset = 0): Promise<void> {
  for (let done = 0; done < n; done += ENQUEUE_CHUNK) {
    const count = Math.min(ENQUEUE_CHUNK, n - done)
    const jobs: BenchJob[] = Array.from({ length: count }, (_, k) => {
      const i = offset + done + k
      return { storeId: `store-${i % 100}`, payload: { i } }
    })
    await system.enqueueBulk(jobs)
    progress(`${system.name}: enqueued ${(done + count).toLocaleString('en-US')}/${n.toLocaleString('en-US')}`)
  }
}

/** Runs `fn` on a short-lived client of `url`. */
export async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  try {
    return await fn(c)
  } finally {
    await c.end()
  }
}

/**
 * ANALYZE of the whole database. The bench server runs with autovacuum off (and
 * a real one might not have analyzed yet either); without statistics the peers'
 * planners guess at a freshly filled table, so every scale point is measured on
 * analyzed tables, as a server with autovacuum on would be after a while.
 */
export async function analyze(url: string): Promise<void> {
  await withClient(url, (c) => c.query('analyze'))
}

/**
 * CHECKPOINT, so a measurement after a bulk fill does not pay for it. A fill
 * leaves shared_buffers full of dirty pages (measured: a claim right after a 1M-row
 * fill wrote evicted buffers itself, `written=4`, and its UPDATE took 6.4 ms
 * instead of ~1.5 ms); a real history accumulates over days of checkpoints, so
 * the claim would not meet those dirty pages. Needs superuser or pg_checkpoint;
 * without either, it reports that it skipped and the numbers carry that cost.
 */
export async function checkpoint(url: string): Promise<boolean> {
  try {
    await withClient(url, (c) => c.query('checkpoint'))
    return true
  } catch (error) {
    progress(`checkpoint skipped: ${(error as Error).message}`)
    return false
  }
}

/** One table's line of VACUUM VERBOSE: what it could and could not remove. */
export interface VacuumLine {
  readonly table: string
  readonly removed: number
  readonly remain: number
  /** Dead row versions some snapshot can still see: VACUUM must keep them. */
  readonly deadNotRemovable: number
}

/**
 * VACUUM (VERBOSE, ANALYZE) of every user table, parsing each table's
 * "tuples: R removed, N remain, D are dead but not yet removable" line (the
 * format of PostgreSQL 15+). Returns the tables that had anything dead.
 */
export async function vacuumAnalyze(url: string): Promise<VacuumLine[]> {
  return withClient(url, async (c) => {
    const notices: string[] = []
    c.on('notice', (n) => notices.push(n.message ?? ''))
    const { rows } = await c.query<{ name: string }>(
      `select format('%I.%I', s.schemaname, s.relname) as name
         from pg_stat_user_tables s join pg_class k on k.oid = s.relid
        where k.relkind = 'r' order by 1`,
    )
    if (rows.length > 0) await c.query(`vacuum (verbose, analyze) ${rows.map((r) => r.name).join(', ')}`)
    const lines: VacuumLine[] = []
    for (const text of notices) {
      const m = /finished vacuuming "([^"]+)"[\s\S]*?tuples: (\d+) removed, (\d+) remain, (\d+) are dead but not yet removable/.exec(text)
      if (!m) continue
      const line = { table: m[1]!.split('.').slice(1).join('.'), removed: Number(m[2]), remain: Number(m[3]), deadNotRemovable: Number(m[4]) }
      if (line.removed + line.deadNotRemovable > 0) lines.push(line)
    }
    return lines
  })
}

/** A table's size and dead tuples as pg_stat_user_tables reports them (counters lag by up to a second). */
export interface TableStats {
  readonly table: string
  readonly liveTuples: number
  readonly deadTuples: number
  readonly totalBytes: number
}

/** The `limit` user tables with the most dead, then live, tuples. */
export async function tableStats(url: string, limit = 6): Promise<TableStats[]> {
  return withClient(url, async (c) => {
    const { rows } = await c.query<{ t: string; live: string; dead: string; bytes: string }>(
      `select schemaname || '.' || relname as t, n_live_tup as live, n_dead_tup as dead,
              pg_total_relation_size(relid) as bytes
         from pg_stat_user_tables
        order by n_dead_tup desc, n_live_tup desc
        limit $1`,
      [limit],
    )
    return rows.map((r) => ({ table: r.t, liveTuples: Number(r.live), deadTuples: Number(r.dead), totalBytes: Number(r.bytes) }))
  })
}

/** Median-of-N EXPLAIN of the system's fetch: the median run's time and plan, and every sample. */
export interface ClaimMeasure {
  readonly claimMs: number
  /**
   * The median run's row-picking step alone: the actual total time of the plan's
   * first Limit node (every system's fetch picks rows under a Limit, then updates
   * them), ms; null when the plan has none. Tells picking from updating apart.
   */
  readonly pickMs: number | null
  readonly plan: string
  readonly samplesMs: ReadonlyArray<number>
}

/** Actual total time of the first Limit node in an EXPLAIN ANALYZE text plan, ms. */
export function pickTime(plan: string): number | null {
  const m = /Limit\s+\(cost=[^)]*\)\s+\(actual time=[\d.]+\.\.([\d.]+)/.exec(plan)
  return m ? Number(m[1]) : null
}

/** Runs `explainFetch` `runs` times (each rolled back) and keeps the median run. */
export async function medianExplain(system: BenchSystem, runs = 5): Promise<ClaimMeasure> {
  const { explainFetch } = scaleHooks(system)
  const samples: { ms: number; plan: string }[] = []
  for (let r = 0; r < runs; r++) {
    progress(`${system.name}: explain fetch ${r + 1}/${runs}`)
    samples.push(await explainFetch())
  }
  const sorted = [...samples].sort((a, b) => a.ms - b.ms)
  const mid = sorted[Math.floor(sorted.length / 2)]!
  return { claimMs: mid.ms, pickMs: pickTime(mid.plan), plan: mid.plan, samplesMs: samples.map((s) => s.ms) }
}

/** What one timed drain measured. */
export interface TimedDrain {
  readonly jobsPerSec: number
  readonly seconds: number
  /** Jobs completed during the drain (completed() minus its value before). */
  readonly completed: number
  /** Handler calls seen. */
  readonly handled: number
  /** The system's anomalies() afterwards (0 expected), or null when not checked. */
  readonly anomalies: number | null
}

/**
 * Starts workers on jobs already enqueued and times until `n` more jobs are
 * completed than before. Unlike drain.ts it does not poll completed() every
 * 50 ms: at scale that is a count over millions of history rows, and polling it
 * would load the server being measured. It waits on the in-process handler
 * count (free) until `n` handlers ran, then polls completed() for the
 * completions that trail the handlers; the end time is the start of the count
 * that first saw all `n`, since every completion it counted had committed
 * before that statement's snapshot.
 */
export async function timedDrain(
  system: BenchSystem,
  opts: { n: number; concurrency: number; processes?: number; timeoutMs?: number; verify?: boolean; label?: string },
): Promise<TimedDrain> {
  const label = opts.label ?? `drain ${opts.n}`
  const baseline = await system.completed()
  const workers = await system.startWorkers({ concurrency: opts.concurrency, processes: opts.processes ?? 1 })
  const t0 = performance.now()
  const deadline = Date.now() + (opts.timeoutMs ?? 600_000)
  let handled = 0
  let completed = 0
  let end = 0
  try {
    while (handled < opts.n && Date.now() < deadline) {
      await sleep(50)
      handled = await workers.handled()
      progress(`${system.name}: ${label} handled ${handled}/${opts.n}`)
    }
    while (Date.now() < deadline) {
      const asked = performance.now()
      completed = (await system.completed()) - baseline
      if (completed >= opts.n) {
        end = asked
        break
      }
      await sleep(20)
    }
  } finally {
    await workers.stop()
  }
  if (end === 0) throw new Error(`${system.name}: ${label} timed out (${completed}/${opts.n} completed, ${handled} handled)`)
  const seconds = (end - t0) / 1000
  const anomalies = opts.verify === false ? null : await system.anomalies()
  return { jobsPerSec: completed / seconds, seconds, completed, handled: await workers.handled(), anomalies }
}
