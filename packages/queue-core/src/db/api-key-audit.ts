import { sql } from 'kysely'
import type { Executor } from './database.ts'

/** One key's uses within one hour, as an API process counted them. */
export interface KeyUseCount {
  /** A key id, `admin` or `admin-previous`. */
  readonly keyId: string
  readonly storeId: string | null
  /** The hour's start. */
  readonly hour: Date
  readonly uses: number
  readonly firstUsedAt: Date
  readonly lastUsedAt: Date
}

/** An api_key_audit row as the API shows it. */
export interface ApiKeyAuditRow {
  readonly id: string
  readonly key_id: string
  readonly store_id: string | null
  readonly event: 'created' | 'revoked' | 'used'
  readonly actor: string | null
  readonly at: Date
  readonly uses: string | null
  readonly first_used_at: Date | null
  readonly last_used_at: Date | null
}

/**
 * Adds use counts to their hour's row, creating it when missing: one
 * statement for any number of keys and hours. Several API processes add to
 * the same rows; the counts add up, first and last use widen. Rows go in
 * (key, hour) order so two processes flushing overlapping rows lock them in
 * the same order and cannot deadlock.
 */
export async function addKeyUses(db: Executor, counts: ReadonlyArray<KeyUseCount>): Promise<void> {
  if (counts.length === 0) return
  const sorted = [...counts].sort((a, b) => (a.keyId < b.keyId ? -1 : a.keyId > b.keyId ? 1 : a.hour.getTime() - b.hour.getTime()))
  await sql`
    insert into api_key_audit as a (key_id, store_id, event, at, uses, first_used_at, last_used_at)
    select u.key_id, u.store_id, 'used', u.hour, u.uses, u.first_used_at, u.last_used_at
    from unnest(
      ${sorted.map((c) => c.keyId)}::text[],
      ${sorted.map((c) => c.storeId)}::text[],
      ${sorted.map((c) => c.hour.toISOString())}::timestamptz[],
      ${sorted.map((c) => String(c.uses))}::bigint[],
      ${sorted.map((c) => c.firstUsedAt.toISOString())}::timestamptz[],
      ${sorted.map((c) => c.lastUsedAt.toISOString())}::timestamptz[]
    ) with ordinality as u(key_id, store_id, hour, uses, first_used_at, last_used_at, n)
    order by u.n
    on conflict (key_id, at) where event = 'used' do update set
      uses = a.uses + excluded.uses,
      first_used_at = least(a.first_used_at, excluded.first_used_at),
      last_used_at = greatest(a.last_used_at, excluded.last_used_at)
  `.execute(db)
}

/**
 * A key's audit rows newest first by `at` (a use row sorts at its hour's
 * start, which never changes as its counts grow), ties by id; with
 * `beforeId`, the rows after that row in this order. The cursor row is
 * looked up rather than carried in the cursor, since timestamps have
 * microseconds a JavaScript Date would drop; a cursor row the retention
 * sweep deleted yields an empty page (every later row is older still).
 */
export async function listKeyAudit(db: Executor, args: { keyId: string; beforeId: string | null; take: number }): Promise<ApiKeyAuditRow[]> {
  const result = await sql<ApiKeyAuditRow>`
    select id::text as id, key_id, store_id, event, actor, at, uses::text as uses, first_used_at, last_used_at
    from api_key_audit
    where key_id = ${args.keyId}
      and (${args.beforeId}::bigint is null
           or (at, id) < (select c.at, c.id from api_key_audit c where c.id = ${args.beforeId}::bigint and c.key_id = ${args.keyId}))
    order by at desc, id desc
    limit ${args.take}
  `.execute(db)
  return result.rows
}

/** Whether an api_keys row has this id (revoked ones too). */
export async function keyExists(db: Executor, id: string): Promise<boolean> {
  const result = await sql<{ found: boolean }>`select exists (select from api_keys where id = ${id}::bigint) as found`.execute(db)
  return result.rows[0]!.found
}

/**
 * Deletes up to `limit` audit rows older than `before` (by `at`: a use
 * row's hour start), oldest first; returns how many went. Bounded, so one
 * statement never holds many row locks or runs long.
 */
export async function deleteAuditBefore(db: Executor, before: Date, limit: number): Promise<number> {
  const result = await sql`
    delete from api_key_audit
    where id in (select id from api_key_audit where at < ${before.toISOString()}::timestamptz order by at limit ${limit})
  `.execute(db)
  return Number(result.numAffectedRows ?? 0)
}
