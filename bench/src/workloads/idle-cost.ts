import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { withDatabase } from '../database.ts'
import { progress } from '../progress.ts'
import type { BenchSystem } from '../systems/system.ts'

/**
 * How long a backend may hold its transaction counts back from the cumulative
 * stats: an idle backend flushes them at most PGSTAT_IDLE_INTERVAL (10 s in
 * PostgreSQL 15+) after its last transaction when it flushed less than a second
 * before; plus a margin.
 */
const STATS_FLUSH_LAG_MS = 11_000

/** Committed plus rolled-back transactions of one database, as the cumulative stats show them now. */
async function transactions(observer: pg.Client, database: string): Promise<number> {
  // Stats read inside a transaction are cached until it ends (stats_fetch_consistency);
  // clearing the snapshot guarantees a fresh read whatever the setting or session state.
  await observer.query('select pg_stat_clear_snapshot()')
  const { rows } = await observer.query<{ n: string }>(
    `select (xact_commit + xact_rollback)::text as n from pg_stat_database where datname = $1`,
    [database],
  )
  if (!rows[0]) throw new Error(`no pg_stat_database row for ${database}`)
  return Number(rows[0].n)
}

/**
 * Idle cost: transactions per minute an idle system runs against its database,
 * with an empty queue and one worker process (in this process, concurrency 10).
 *
 * Counts `xact_commit + xact_rollback` of the system's database in
 * pg_stat_database, read from a connection to ANOTHER database of the same
 * server, so the measuring adds nothing to the count. Everything that runs on the
 * system's database counts (the worker, the adapter's own pool or client instance,
 * connection start-ups, autovacuum there); nothing is subtracted.
 *
 * The window starts after a 2 s warm-up (the worker's start-up statements stay out)
 * and lasts `seconds`. Backends flush their counts late (see
 * {@link STATS_FLUSH_LAG_MS}), so a burst just before the window (setup, worker
 * start-up) could land inside it if the counts were read at its edges. Each edge is
 * therefore read {@link STATS_FLUSH_LAG_MS} late, with the worker still idling:
 * by then everything before the edge has surely been flushed, and the idle work
 * after each edge that is already visible is the same steady trickle at both ends,
 * so it cancels out. `pg_stat_force_next_flush()` cannot replace the wait: it
 * flushes only the calling backend.
 *
 * `url` is the system's database (the one passed to `setup`); default `system.url`.
 */
export async function idleCost(
  system: BenchSystem,
  opts: { seconds: number; url?: string; warmupMs?: number },
): Promise<{ txPerMinute: number }> {
  const url = opts.url ?? system.url
  if (!url) throw new Error(`idleCost(${system.name}): pass the database url the system was set up on`)
  const database = decodeURIComponent(new URL(url).pathname.slice(1))
  const observer = new pg.Client({ connectionString: withDatabase(url, database === 'postgres' ? 'template1' : 'postgres') })
  await observer.connect()
  try {
    const workers = await system.startWorkers({ concurrency: 10, processes: 1 })
    try {
      const countAt = async (edge: number, label: string) => {
        await waitUntil(edge + STATS_FLUSH_LAG_MS, (left) => progress(`${system.name}: idle cost, ${label} in ${left} s`))
        return transactions(observer, database)
      }
      const t0 = performance.now() + (opts.warmupMs ?? 2_000)
      const t1 = t0 + opts.seconds * 1_000
      // With a window longer than the lag, the start edge's late read happens inside the
      // window; that is harmless, since reading from another database adds nothing.
      const first = await countAt(t0, 'first read')
      const last = await countAt(t1, 'last read')
      return { txPerMinute: (last - first) / (opts.seconds / 60) }
    } finally {
      await workers.stop()
    }
  } finally {
    await observer.end()
  }
}

/** Sleeps until `performance.now()` reaches `at`, reporting the whole seconds left every few seconds. */
async function waitUntil(at: number, report: (secondsLeft: number) => void): Promise<void> {
  for (let left = at - performance.now(); left > 0; left = at - performance.now()) {
    report(Math.ceil(left / 1_000))
    await sleep(Math.min(left, 5_000))
  }
}
