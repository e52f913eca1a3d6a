// One sample per window: what the soak's verdict and plot are made of. Reads
// /proc for the processes' RSS and the soak database for tuples, latency,
// completions and backlog (read-only statements; the soak writes nothing).
import { readFileSync } from 'node:fs'
import type pg from 'pg'

/** Pick-up latency percentiles of the jobs that started in a window, in ms. */
export interface PickupLatency {
  readonly started: number
  readonly p50Ms: number | null
  readonly p99Ms: number | null
}

/** One window's figures. */
export interface SoakSample {
  /** Minutes since the load started, at the window's end. */
  readonly minute: number
  readonly at: string
  /** VmRSS per service name, in MB (null once the process is gone). */
  readonly rssMb: Readonly<Record<string, number | null>>
  /** pg_stat_user_tables for `jobs`. */
  readonly deadTuples: number
  readonly liveTuples: number
  readonly autovacuumCount: number
  readonly pickup: PickupLatency
  /** Jobs that reached history in the window, by final state. */
  readonly completed: number
  readonly failed: number
  /** Accepted by the API in the window (the load generator's 2xx count). */
  readonly enqueued: number
  readonly rejected: number
  readonly pending: number
  readonly scheduled: number
  readonly running: number
}

/** VmRSS of `pid` in MB from /proc (Linux), or null when the process is gone. */
export function rssMb(pid: number | undefined): number | null {
  if (pid === undefined) return null
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) / 1024 : null
  } catch {
    return null
  }
}

/**
 * Pick-up latency (started_at − max(run_at, created_at): how long a job
 * that could run waited for a slot) of the jobs whose latest attempt started
 * in [from, to), running ones from `jobs`, finished ones from `job_history`.
 * For a retried job that is the retry's pick-up, measured from its backoff's end.
 */
export async function pickupLatency(client: pg.Pool, from: Date, to: Date): Promise<PickupLatency> {
  const { rows } = await client.query<{ started: number; p50: number | null; p99: number | null }>(
    `with picked as (
       select started_at - greatest(run_at, created_at) as wait from jobs
        where started_at >= $1 and started_at < $2
       union all
       select started_at - greatest(run_at, created_at) from job_history
        where finished_at >= $1 and started_at >= $1 and started_at < $2
     )
     select count(*)::int as started,
            (extract(epoch from percentile_cont(0.5) within group (order by wait)) * 1000)::float8 as p50,
            (extract(epoch from percentile_cont(0.99) within group (order by wait)) * 1000)::float8 as p99
       from picked`,
    [from, to],
  )
  const r = rows[0]
  return { started: r?.started ?? 0, p50Ms: r?.p50 ?? null, p99Ms: r?.p99 ?? null }
}

/** Everything but RSS and the load counters for the window [from, to). */
export async function sampleDatabase(
  client: pg.Pool,
  from: Date,
  to: Date,
): Promise<Pick<SoakSample, 'deadTuples' | 'liveTuples' | 'autovacuumCount' | 'pickup' | 'completed' | 'failed' | 'pending' | 'scheduled' | 'running'>> {
  const tuples = await client.query<{ dead: number; live: number; autovacuums: number }>(
    `select n_dead_tup::int as dead, n_live_tup::int as live, autovacuum_count::int as autovacuums
       from pg_stat_user_tables where relname = 'jobs'`,
  )
  const done = await client.query<{ completed: number; failed: number }>(
    `select count(*) filter (where state = 'completed')::int as completed,
            count(*) filter (where state = 'failed')::int as failed
       from job_history where finished_at >= $1 and finished_at < $2`,
    [from, to],
  )
  const backlog = await client.query<{ pending: number; scheduled: number; running: number }>(
    `select count(*) filter (where state = 'pending')::int as pending,
            count(*) filter (where state = 'scheduled')::int as scheduled,
            count(*) filter (where state = 'running')::int as running
       from jobs`,
  )
  const t = tuples.rows[0]
  const d = done.rows[0]
  const b = backlog.rows[0]
  return {
    deadTuples: t?.dead ?? 0,
    liveTuples: t?.live ?? 0,
    autovacuumCount: t?.autovacuums ?? 0,
    pickup: await pickupLatency(client, from, to),
    completed: d?.completed ?? 0,
    failed: d?.failed ?? 0,
    pending: b?.pending ?? 0,
    scheduled: b?.scheduled ?? 0,
    running: b?.running ?? 0,
  }
}
