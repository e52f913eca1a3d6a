import type { Db } from '@backroom/queue-core'

/** Per table (and sequence) of the public schema: a digest of every row, or a sequence's last value. */
export type TableFingerprint = Readonly<Record<string, string>>

/**
 * Digests every table of the public schema row by row, and reads every
 * sequence. Two equal fingerprints mean nothing was inserted, updated or
 * deleted, and no insert was even attempted (a rolled-back insert still
 * moves its sequence). Counting rows would miss an update, such as a
 * cancel that went through.
 *
 * @example
 * const before = await tableFingerprint(t.db)
 * // … requests that must not write …
 * expect(await tableFingerprint(t.db)).toEqual(before)
 */
export async function tableFingerprint(db: Db): Promise<TableFingerprint> {
  const { rows: tables } = await db.pool.query<{ name: string }>(
    `select c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relispartition order by 1`,
  )
  const out: Record<string, string> = {}
  for (const { name } of tables) {
    // Names come from the catalog, not from input; quoted all the same.
    const quoted = `"${name.replaceAll('"', '""')}"`
    const { rows } = await db.pool.query<{ digest: string }>(
      `select count(*) || ':' || coalesce(md5(string_agg(t::text, '|' order by t::text)), '') as digest from ${quoted} t`,
    )
    out[`table ${name}`] = rows[0]!.digest
  }
  const { rows: sequences } = await db.pool.query<{ name: string; last: string | null }>(
    `select sequencename as name, last_value::text as last from pg_sequences where schemaname = 'public'`,
  )
  for (const { name, last } of sequences) out[`sequence ${name}`] = last ?? 'unused'
  return out
}
