import { sql, type Kysely } from 'kysely'
import type { Database } from './database.ts'

/** One (type, state) line of {@link depthByTypeAndState}, as `pg` returns it. */
export interface DepthRow {
  readonly type: string
  readonly state: 'pending' | 'scheduled' | 'running' | 'paused'
  readonly jobs: number
  /** Age of the line's oldest job in ms (since its creation). */
  readonly oldest_ms: number
}

/**
 * Live jobs per (type, state) and the age of each line's oldest job: the
 * figures a metrics scrape exports, and nothing else (no per-store grouping,
 * unlike healthFigures). Runs in its own transaction under a
 * transaction-local statement_timeout, so a scrape can never hold a
 * connection (or a lock queue on `jobs`) longer than `timeoutMs`.
 *
 * Index: none. Counting every live job by type needs one pass over `jobs`
 * (no index leads with type; adding one would cost every enqueue). The
 * table holds live jobs only, and callers read this at most once per cache
 * window rather than once per scrape.
 */
export async function depthByTypeAndState(db: Kysely<Database>, args: { timeoutMs: number }): Promise<DepthRow[]> {
  return db.transaction().execute(async (trx) => {
    // set_config(…, true) is SET LOCAL with a parameter: it ends with this transaction.
    await sql`select set_config('statement_timeout', ${String(args.timeoutMs)}, true)`.execute(trx)
    const result = await sql<DepthRow>`
      select type, state, count(*)::int as jobs,
             (extract(epoch from now() - min(created_at)) * 1000)::float8 as oldest_ms
      from jobs
      group by type, state
      order by type, state
    `.execute(trx)
    return result.rows
  })
}
