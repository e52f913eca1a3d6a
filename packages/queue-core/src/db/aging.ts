import { sql } from 'kysely'
import type { Executor } from './database.ts'

/** The claim priorities that can still age (1, urgent, is the floor). */
const AGEABLE_LEVELS = [2, 3, 4, 5, 6, 7, 8, 9, 10]

/**
 * Ages waiting jobs: a pending job whose virtual start time is Δ behind the
 * global virtual clock gets claim priority max(1, priority − ⌊Δ / step⌋).
 * Returns how many jobs moved up, and whether any pending job could still age.
 *
 * Virtual time, not wall time: the clock advances only as work is claimed,
 * so a job ages exactly as fast as newer work is served ahead of it, and a job
 * waiting behind its own store's backlog (start time ahead of the clock) does
 * not age at all — fairness already decides when it runs.
 *
 * Index: jobs_claim_idx (claim_priority, vtime, id), one range per level:
 * `claim_priority = p and vtime < clock − step`, at most `batch` jobs per level.
 */
export async function ageWaiting(db: Executor, args: { step: number; batch: number }): Promise<{ aged: number; waiting: boolean }> {
  const result = await sql<{ aged: number; waiting: boolean }>`
    with clock as (select vtime as g from queue_clock),
    due as (
      select a.id
      from unnest(${AGEABLE_LEVELS}::smallint[]) as lv(p)
      cross join lateral (
        select j.id from jobs j
        where j.state = 'pending' and j.claim_priority = lv.p and j.vtime < (select g from clock) - ${args.step}::float8
        order by j.claim_priority, j.vtime, j.id
        limit ${args.batch}
        for update skip locked
      ) a
    ),
    aged as (
      update jobs j
      set claim_priority = greatest(1, j.priority - floor(((select g from clock) - j.vtime) / ${args.step}::float8))::smallint
      from due
      where j.id = due.id
        and greatest(1, j.priority - floor(((select g from clock) - j.vtime) / ${args.step}::float8)) < j.claim_priority
      returning j.id
    )
    select count(*)::int as aged,
           -- Anything left that may age later? An idle queue lets the ager sleep long.
           exists (select 1 from jobs where state = 'pending' and claim_priority > 1) as waiting
    from aged
  `.execute(db)
  const row = result.rows[0]
  return { aged: row?.aged ?? 0, waiting: row?.waiting ?? false }
}
