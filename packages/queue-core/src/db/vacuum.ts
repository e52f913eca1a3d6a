import { sql } from 'kysely'
import type { Executor } from './database.ts'

/** The queue tables whose rows churn: every claim or enqueue leaves dead versions. */
export const VACUUMED_TABLES = ['jobs', 'stores', 'queue_clock'] as const
export type VacuumedTable = (typeof VACUUMED_TABLES)[number]

/** Dead row versions per queue table, from the statistics collector. */
export async function deadTuples(db: Executor): Promise<Map<string, number>> {
  const result = await sql<{ relname: string; n_dead_tup: string }>`
    select relname, n_dead_tup from pg_stat_user_tables
    where schemaname = current_schema() and relname = any(${[...VACUUMED_TABLES]}::text[])
  `.execute(db)
  return new Map(result.rows.map((r) => [r.relname, Number(r.n_dead_tup)]))
}

/**
 * VACUUM (ANALYZE) one queue table. Runs outside any transaction (VACUUM
 * refuses to run inside one), so pass the pool, not a transaction. The table
 * name comes from a fixed list, never from input.
 */
export async function vacuumTable(db: Executor, table: VacuumedTable): Promise<void> {
  if (!VACUUMED_TABLES.includes(table)) throw new Error(`not a queue table: ${table}`)
  await sql`vacuum (analyze) ${sql.table(table)}`.execute(db)
}
