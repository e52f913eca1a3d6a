import { sql } from 'kysely'
import type { Executor } from './database.ts'

/**
 * A percentile of recent run times (finished_at - started_at, in ms) per job
 * type, from the last `sample` completed and the last `sample` failed jobs of
 * each type that finished within `windowMs`. Types with no such job are
 * absent. Cancelled jobs are left out: many never ran.
 *
 * Index: job_history_type_idx (type, state, finished_at), one backward walk
 * per (type, state) that stops after `sample` rows, so a busy type costs
 * the same as a quiet one; `finished_at >= since` also prunes partitions.
 */
export async function runTimePercentiles(
  db: Executor,
  args: { types: ReadonlyArray<string>; windowMs: number; percentile: number; sample: number },
): Promise<Array<{ type: string; ms: number; runs: number }>> {
  if (args.types.length === 0) return []
  const since = sql`now() - ${args.windowMs}::int * interval '1 millisecond'`
  const result = await sql<{ type: string; ms: number; runs: number }>`
    select t.type,
           percentile_cont(${args.percentile}::float8) within group (order by r.ms) as ms,
           count(*)::int as runs
    from unnest(${[...args.types]}::text[]) as t(type)
    cross join unnest(array['completed', 'failed']::text[]) as s(state)
    cross join lateral (
      select extract(epoch from h.finished_at - h.started_at)::float8 * 1000 as ms
      from job_history h
      where h.type = t.type and h.state = s.state and h.finished_at >= ${since} and h.started_at is not null
      order by h.finished_at desc
      limit ${args.sample}::int
    ) r
    group by t.type
  `.execute(db)
  return result.rows
}

/**
 * Pending jobs of the given types (runnable now: due scheduled jobs become
 * pending through the promoter).
 *
 * Index: jobs_claim_idx covers exactly `state = 'pending'`; the type filter
 * is applied to its rows.
 */
export async function countPending(db: Executor, types: ReadonlyArray<string>): Promise<number> {
  const result = await sql<{ n: number }>`
    select count(*)::int as n from jobs where state = 'pending' and type = any(${[...types]}::text[])
  `.execute(db)
  return result.rows[0]?.n ?? 0
}
