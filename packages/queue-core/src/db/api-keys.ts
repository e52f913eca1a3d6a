import { sql } from 'kysely'
import type { Executor } from './database.ts'

/** An api_keys row as authentication needs it, with the installation's HMAC key. */
export interface ApiKeyCheckRow {
  readonly id: string
  readonly store_id: string | null
  readonly token_hash: Buffer
  readonly revoked: boolean
  readonly secret: Buffer
}

/** The installation's HMAC key for tokens (api_key_secret, made by migration 0009). */
export async function readSecret(db: Executor): Promise<Buffer> {
  const result = await sql<{ secret: Buffer }>`select secret from api_key_secret`.execute(db)
  const row = result.rows[0]
  if (!row) throw new Error('api_key_secret is empty: migration 0009 did not run')
  return row.secret
}

/** Reserves the next key id (the token embeds it, so it is known before the hash). */
export async function nextKeyId(db: Executor): Promise<string> {
  const result = await sql<{ id: string }>`select nextval(pg_get_serial_sequence('api_keys', 'id'))::text as id`.execute(db)
  return result.rows[0]!.id
}

/** Inserts a key under a reserved id. */
export async function insertKey(
  db: Executor,
  args: { id: string; storeId: string | null; label: string; tokenHash: Buffer },
): Promise<{ created_at: Date }> {
  const result = await sql<{ created_at: Date }>`
    insert into api_keys (id, store_id, label, token_hash)
    overriding system value
    values (${args.id}::bigint, ${args.storeId}, ${args.label}, ${args.tokenHash})
    returning created_at
  `.execute(db)
  return result.rows[0]!
}

/** A key and the HMAC key in one round trip (primary-key lookup). */
export async function keyForCheck(db: Executor, id: string): Promise<ApiKeyCheckRow | null> {
  const result = await sql<ApiKeyCheckRow>`
    select k.id::text as id, k.store_id, k.token_hash, k.revoked_at is not null as revoked, s.secret
    from api_keys k cross join api_key_secret s
    where k.id = ${id}::bigint
  `.execute(db)
  return result.rows[0] ?? null
}

/** Marks a key revoked (kept for audit); the store a key belongs to, or null when there is no such key. */
export async function revokeKey(db: Executor, id: string): Promise<{ store_id: string | null } | null> {
  const result = await sql<{ store_id: string | null }>`
    update api_keys set revoked_at = coalesce(revoked_at, now())
    where id = ${id}::bigint
    returning store_id
  `.execute(db)
  return result.rows[0] ?? null
}
