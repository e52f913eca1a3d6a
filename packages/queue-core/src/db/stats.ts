import { sql } from 'kysely'
import type { Executor } from './database.ts'

/** One store's line of {@link fairnessByStore}, as `pg` returns it. */
export interface StoreFairnessRow {
  readonly store_id: string
  readonly weight: number
  readonly started: number
  readonly share: number
  readonly weight_share: number
  readonly wait_p50_ms: number | null
  readonly wait_p99_ms: number | null
}

/**
 * Jobs started in the last `windowMs` per store (finished ones from
 * `job_history`, running ones from `jobs`), with each store's share of them,
 * its share of the active stores' weight, and the p50/p99 of its jobs' wait
 * (started_at - run_at, floored at 0, in ms). Shares are computed over every
 * store before `storeId` and `limit` pick the stores returned, busiest first.
 *
 * Index: a job starts before it finishes, so `finished_at >= since` drops no
 * job the window counts; it lets PostgreSQL prune job_history to the
 * partitions of the window's days (at executor start, now() being stable)
 * and use job_history_store_idx. Running jobs are read through the partial
 * jobs_running_idx. Counts are a hash aggregate; only the returned stores'
 * waits are sorted for the percentiles, so a one-store query sorts one
 * store's jobs.
 */
export async function fairnessByStore(
  db: Executor,
  args: { windowMs: number; storeId: string | null; limit: number },
): Promise<StoreFairnessRow[]> {
  const since = sql`now() - ${args.windowMs}::int * interval '1 millisecond'`
  const result = await sql<StoreFairnessRow>`
    with started as materialized (
      select store_id, greatest(extract(epoch from started_at - run_at) * 1000, 0)::float8 as wait_ms
      from job_history
      where finished_at >= ${since} and started_at >= ${since}
      union all
      select store_id, greatest(extract(epoch from started_at - run_at) * 1000, 0)::float8
      from jobs
      where state = 'running' and started_at >= ${since}
    ),
    counts as (
      select c.store_id, c.started, coalesce(s.weight, 1) as weight,
             c.started / sum(c.started) over () as share,
             coalesce(s.weight, 1) / sum(coalesce(s.weight, 1)) over () as weight_share
      from (select store_id, count(*)::float8 as started from started group by store_id) c
      left join stores s on s.store_id = c.store_id
    ),
    -- The window sums above must see every store: filter only after them.
    shown as (
      select * from counts
      where ${args.storeId}::text is null or store_id = ${args.storeId}::text
      order by started desc, store_id
      limit ${args.limit}::int
    ),
    waits as (
      select w.store_id, percentile_cont(array[0.5, 0.99]::float8[]) within group (order by w.wait_ms) as p
      from started w join shown using (store_id)
      group by w.store_id
    )
    select sh.store_id, sh.weight, sh.started::int as started, sh.share, sh.weight_share,
           ws.p[1] as wait_p50_ms, ws.p[2] as wait_p99_ms
    from shown sh left join waits ws using (store_id)
    order by sh.started desc, sh.store_id
  `.execute(db)
  return result.rows
}
