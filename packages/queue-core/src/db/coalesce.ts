import { sql } from 'kysely'
import type { Executor } from './database.ts'
import { NOTIFY_CHANNEL } from '../config.ts'
import { runnableState } from './pauses.ts'
import { epochMs } from './rows.ts'

/** A job type's coalescing settings (job_types), or null when it does not coalesce. */
export interface CoalesceSettings {
  readonly strategy: 'append' | 'merge' | 'replace'
  readonly field: string
  readonly maxDelayMs: number
  readonly maxBatch: number
}

/** Reads a type's coalescing settings. */
export async function coalesceSettings(db: Executor, type: string): Promise<CoalesceSettings | null> {
  const result = await sql<{ s: CoalesceSettings['strategy']; f: string; d: number; b: number }>`
    select coalesce_strategy as s, coalesce(coalesce_field, 'items') as f,
           coalesce(coalesce_max_delay_ms, 0) as d, coalesce(coalesce_max_batch, 1000000) as b
    from job_types where type = ${type} and coalesce_strategy is not null
  `.execute(db)
  const row = result.rows[0]
  return row ? { strategy: row.s, field: row.f, maxDelayMs: row.d, maxBatch: row.b } : null
}

/** The open job an enqueue was folded into. */
export interface MergedRow {
  readonly id: string
  readonly state: 'pending' | 'scheduled' | 'paused'
  readonly coalesced: number
  readonly payload: unknown
  readonly run_at_ms: number
  readonly created_at_ms: number
}

/**
 * Folds `payload` into the store's open job of this type and key, if there is
 * one with room (fewer than maxBatch enqueues in it). One UPDATE: the row
 * lock serialises concurrent enqueuers, and a job claimed meanwhile (no
 * longer open) matches nothing, so the caller inserts a new one. Folding
 * into a due (pending) job notifies the workers: see `notified`.
 * Index: jobs_coalesce_idx.
 */
export async function mergeIntoOpen(
  db: Executor,
  args: { storeId: string; type: string; key: string; payload: string; settings: CoalesceSettings },
): Promise<MergedRow | undefined> {
  const { settings: c } = args
  const result = await sql<MergedRow>`
    with merged as (
    update jobs j
    set payload = case ${c.strategy}::text
          when 'append' then jsonb_set(
            j.payload, array[${c.field}::text],
            (case when jsonb_typeof(j.payload -> ${c.field}::text) = 'array' then j.payload -> ${c.field}::text else '[]'::jsonb end)
            || (case when jsonb_typeof(${args.payload}::jsonb -> ${c.field}::text) = 'array' then ${args.payload}::jsonb -> ${c.field}::text
                     when ${args.payload}::jsonb -> ${c.field}::text is null then '[]'::jsonb
                     else jsonb_build_array(${args.payload}::jsonb -> ${c.field}::text) end))
          when 'merge' then j.payload || ${args.payload}::jsonb
          else ${args.payload}::jsonb end,
        coalesced = j.coalesced + 1
    where j.store_id = ${args.storeId} and j.type = ${args.type} and j.coalesce_key = ${args.key}
      and j.state in ('scheduled', 'pending', 'paused') and j.coalesced < ${c.maxBatch}
    returning j.id, j.state, j.coalesced, j.payload,
              ${epochMs(sql.ref('j.run_at'))} as run_at_ms, ${epochMs(sql.ref('j.created_at'))} as created_at_ms
    ),
    -- A claim that ran while this update held the row skipped it (SKIP
    -- LOCKED) and went back to sleep: wake the workers once it is free.
    notified as (select pg_notify(${NOTIFY_CHANNEL}, '') where exists (select 1 from merged where state = 'pending'))
    select m.*, (select count(*) from notified) as notified from merged m
  `.execute(db)
  return result.rows[0]
}

/**
 * Seals a full open job (maxBatch enqueues): it leaves coalescing and falls
 * due now, so the next enqueue starts a new one.
 */
export async function sealFull(db: Executor, args: { storeId: string; type: string; key: string; maxBatch: number }): Promise<number> {
  const result = await sql<{ n: number }>`
    with moved as (
      update jobs j
      set coalesce_key = null,
          run_at = least(j.run_at, now()),
          state = case when j.state = 'scheduled' then ${runnableState(sql.ref('j.store_id'), sql.ref('j.type'))} else j.state end
      where j.store_id = ${args.storeId} and j.type = ${args.type} and j.coalesce_key = ${args.key}
        and j.state in ('scheduled', 'pending', 'paused') and j.coalesced >= ${args.maxBatch}
      returning j.state
    ),
    notified as (select pg_notify(${NOTIFY_CHANNEL}, '') where exists (select 1 from moved where state = 'pending'))
    select count(*)::int as n, (select count(*) from notified) as notified from moved
  `.execute(db)
  return result.rows[0]?.n ?? 0
}
