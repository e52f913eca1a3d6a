import { sql } from 'kysely'
import type { Executor } from './database.ts'

/**
 * The (store, value) pairs some live job of `type` names in its payload's
 * top-level `field` (compared as text: `payload ->> field`). Read-only.
 *
 * Index: jobs_store_idx (store_id, created_at, id) where state <> 'running'
 * and jobs_running_idx (store_id, type, id) where state = 'running': each
 * pair probes its store's live jobs. With many pairs the planner may scan
 * the small live table once instead (a hashed subplan); either is bounded
 * by the live table, never the history.
 */
export async function referencedPairs(
  db: Executor,
  args: { type: string; field: string; storeIds: ReadonlyArray<string>; values: ReadonlyArray<string> },
): Promise<Array<{ store_id: string; value: string }>> {
  const result = await sql<{ store_id: string; value: string }>`
    select r.store_id, r.value
    from unnest(${args.storeIds}::text[], ${args.values}::text[]) as r (store_id, value)
    where exists (
      select 1 from jobs j
      where j.store_id = r.store_id and j.type = ${args.type}::text and j.payload ->> ${args.field}::text = r.value
    )
  `.execute(db)
  return result.rows
}
