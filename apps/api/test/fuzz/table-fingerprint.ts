import type { Db } from '@backroom/queue-core'

/** Per table (and sequence) of the public schema: a digest of every row, or a sequence's last value. */
export type TableFingerprint = Readonly<Record<string, string>>

/**
 * Rows every authenticated request may write, bad ones included: the API
 * key use audit counts each request a key made (flushed every few
 * seconds), whatever the answer. Left out of the digest, with the audit's
 * sequence (its upserts move it); the audit's other rows (a key created or
 * revoked) are still digested.
 */
const EXPECTED_WRITES: Readonly<Record<string, { readonly keep: string; readonly sequence: string }>> = {
  api_key_audit: { keep: `t.event <> 'used'`, sequence: 'api_key_audit_id_seq' },
}

/**
 * Digests every table of the public schema row by row, and reads every
 * sequence. Two equal fingerprints mean nothing was inserted, updated or
 * deleted, and no insert was even attempted (a rolled-back insert still
 * moves its sequence). Counting rows would miss an update, such as a
 * cancel that went through. The one write any authenticated request makes
 * (its key's use count, {@link EXPECTED_WRITES}) is not counted.
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
      `select count(*) || ':' || coalesce(md5(string_agg(t::text, '|' order by t::text)), '') as digest from ${quoted} t where ${EXPECTED_WRITES[name]?.keep ?? 'true'}`,
    )
    out[`table ${name}`] = rows[0]!.digest
  }
  const { rows: sequences } = await db.pool.query<{ name: string; last: string | null }>(
    `select sequencename as name, last_value::text as last from pg_sequences where schemaname = 'public'`,
  )
  const skipped = new Set(Object.values(EXPECTED_WRITES).map((w) => w.sequence))
  for (const { name, last } of sequences) if (!skipped.has(name)) out[`sequence ${name}`] = last ?? 'unused'
  return out
}
