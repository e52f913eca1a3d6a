import { sql } from 'kysely'
import type { Executor } from './database.ts'

/** One line of {@link healthFigures}, as `pg` returns it. */
export interface HealthRow {
  /** 'overall', 'type', 'store' or 'store_type': which grouping the line belongs to. */
  readonly level: 'overall' | 'type' | 'store' | 'store_type'
  readonly store_id: string | null
  readonly type: string | null
  readonly pending: number
  readonly scheduled: number
  readonly running: number
  readonly paused: number
  readonly oldest_pending_ms: number | null
  readonly long_running: number
}

/**
 * The figures of the `job_queue_health` view (infra/migrations 0001, 0005),
 * with the same definitions, grouped four ways at once: overall, per type,
 * per store and per (store, type). The view itself groups by type only and
 * fixes "long running" at 30 minutes, so the figures are computed here from
 * `jobs` rather than read from it; queue-health.test.ts checks that the
 * per-type lines equal the view's rows at the view's threshold.
 *
 * `storeId` restricts every line to one store (a store key's view).
 * Store lines are the `storeLimit` stores with the largest backlog (then
 * the oldest pending job); their (store, type) lines come with them, so a
 * platform with thousands of stores answers with a bounded list.
 *
 * Index: none. `jobs` holds live jobs only, and counting it per type is a
 * scan of the small live table (see the note on jobs_store_idx in 0001);
 * with `storeId`, jobs_store_idx and jobs_running_idx narrow it to the store.
 * One scan feeds all four groupings (GROUPING SETS).
 */
export async function healthFigures(
  db: Executor,
  args: { storeId: string | null; longRunningMs: number; storeLimit: number },
): Promise<HealthRow[]> {
  const result = await sql<HealthRow>`
    with figures as materialized (
      select
        case grouping(store_id, type) when 3 then 'overall' when 2 then 'type' when 1 then 'store' else 'store_type' end as level,
        store_id,
        type,
        count(*) filter (where state = 'pending')::int   as pending,
        count(*) filter (where state = 'scheduled')::int as scheduled,
        count(*) filter (where state = 'running')::int   as running,
        count(*) filter (where state = 'paused')::int    as paused,
        (extract(epoch from now() - min(created_at) filter (where state = 'pending')) * 1000)::float8 as oldest_pending_ms,
        count(*) filter (
          where state = 'running' and started_at < now() - ${args.longRunningMs}::int * interval '1 millisecond'
        )::int as long_running
      from jobs
      where ${args.storeId}::text is null or store_id = ${args.storeId}::text
      group by grouping sets ((), (type), (store_id), (store_id, type))
    ),
    shown_stores as (
      select store_id from figures
      where level = 'store'
      order by pending desc, oldest_pending_ms desc nulls last, store_id
      limit ${args.storeLimit}::int
    )
    select * from figures
    where level in ('overall', 'type') or store_id in (select store_id from shown_stores)
    order by case level when 'overall' then 0 when 'type' then 1 when 'store' then 2 else 3 end,
             pending desc, store_id, type
  `.execute(db)
  return result.rows
}

/** The `job_queue_health` view as it stands (tests compare against it). */
export async function viewRows(db: Executor): Promise<
  Array<{ type: string; pending: number; scheduled: number; running: number; oldest_pending_s: number | null; long_running: number; paused: number }>
> {
  const result = await sql<{
    type: string
    pending: number
    scheduled: number
    running: number
    oldest_pending_s: number | null
    long_running: number
    paused: number
  }>`
    select type, pending::int, scheduled::int, running::int, oldest_pending_s, long_running::int, paused::int
    from job_queue_health order by type
  `.execute(db)
  return result.rows
}
