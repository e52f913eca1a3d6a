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

/**
 * Inserts a key under a reserved id, and its `created` audit row in the
 * same statement (so in the same transaction: neither exists without the
 * other). The audit row holds the id, store and actor, never the hash.
 */
export async function insertKey(
  db: Executor,
  args: { id: string; storeId: string | null; label: string; tokenHash: Buffer; actor: string },
): Promise<{ created_at: Date }> {
  const result = await sql<{ created_at: Date }>`
    with inserted as (
      insert into api_keys (id, store_id, label, token_hash)
      overriding system value
      values (${args.id}::bigint, ${args.storeId}, ${args.label}, ${args.tokenHash})
      returning id, store_id, created_at
    ), audit as (
      insert into api_key_audit (key_id, store_id, event, actor, at)
      select id::text, store_id, 'created', ${args.actor}, created_at from inserted
    )
    select created_at from inserted
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

/**
 * Marks a key revoked (the row is kept for audit) and, only when this call
 * revoked it, writes its `revoked` audit row in the same statement. The
 * row lock makes a concurrent second revoke wait and then see the key
 * already revoked, so a key has at most one `revoked` row. Returns the
 * key's store (null: a platform key), or null when there is no such key.
 */
export async function revokeKey(db: Executor, id: string, actor: string): Promise<{ store_id: string | null } | null> {
  const result = await sql<{ store_id: string | null }>`
    with target as (
      select id, store_id, revoked_at is not null as was_revoked
      from api_keys where id = ${id}::bigint
      for update
    ), revoked as (
      update api_keys k set revoked_at = now()
      from target t
      where k.id = t.id and not t.was_revoked
      returning k.id, k.store_id, k.revoked_at
    ), audit as (
      insert into api_key_audit (key_id, store_id, event, actor, at)
      select id::text, store_id, 'revoked', ${actor}, revoked_at from revoked
    )
    select store_id from target
  `.execute(db)
  return result.rows[0] ?? null
}
