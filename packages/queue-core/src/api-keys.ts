import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import type { Executor } from './db/database.ts'
import * as keys from './db/api-keys.ts'
import { checkActor, UNKNOWN_ACTOR, type ApiKeyActor } from './api-key-audit.ts'
import { ValidationError } from './errors.ts'
import { checkStoreId, isBigintId, isStorableText } from './validate.ts'

/** Who a valid key speaks for: a store key's store, or the platform (null). */
export interface ApiPrincipal {
  readonly keyId: string
  /** null: a platform key (may act for any store). */
  readonly storeId: string | null
}

/** A new key: `key` is the token, shown this once and never stored. */
export interface CreatedApiKey extends ApiPrincipal {
  readonly key: string
  readonly createdAt: Date
}

/** Tokens: `brk_<id>_<43 base64url characters = 256 random bits>`. */
const TOKEN = /^brk_([1-9][0-9]{0,18})_([A-Za-z0-9_-]{43})$/

/**
 * Creates an API key: for one store (`storeId`), or a platform key (null).
 * The token is returned once; only its HMAC is stored. A `created` audit
 * row naming `actor` (who did it: see {@link ApiKeyActor}; `unknown` when
 * not given) is written in the same transaction.
 *
 * @example
 * const { keyId, key } = await createApiKey(db.kysely, { storeId: 'store-42', label: 'dashboard', actor: 'cli' })
 */
export async function createApiKey(
  db: Executor,
  options: { readonly storeId: string | null; readonly label?: string; readonly actor?: ApiKeyActor },
): Promise<CreatedApiKey> {
  if (options.storeId !== null) checkStoreId(options.storeId)
  const actor = checkActor(options.actor ?? UNKNOWN_ACTOR)
  const label = options.label ?? ''
  if (typeof label !== 'string' || label.length > 200 || !isStorableText(label)) throw new ValidationError('label must be a string of at most 200 characters', { field: 'label' })
  const run = async (trx: Executor) => {
    const [secret, id] = await Promise.all([keys.readSecret(trx), keys.nextKeyId(trx)])
    const key = `brk_${id}_${randomBytes(32).toString('base64url')}`
    const { created_at } = await keys.insertKey(trx, { id, storeId: options.storeId, label, tokenHash: tokenHash(secret, key), actor })
    return { keyId: id, storeId: options.storeId, key, createdAt: created_at }
  }
  return db.isTransaction ? run(db) : db.transaction().execute(run)
}

/**
 * The principal a bearer token speaks for, or null when it is not a live
 * key (malformed, unknown, revoked or wrong: the caller cannot tell which).
 * One primary-key lookup and a constant-time compare.
 */
export async function authenticateApiKey(db: Executor, token: string): Promise<ApiPrincipal | null> {
  const match = TOKEN.exec(token)
  if (!match || !isBigintId(match[1])) return null
  const row = await keys.keyForCheck(db, match[1]!)
  if (!row || row.revoked) return null
  if (!timingSafeEqual(tokenHash(row.secret, token), row.token_hash)) return null
  return { keyId: row.id, storeId: row.store_id }
}

/**
 * Revokes a key; every later request with it gets 401 (authentication
 * reads the key's row on each request, in every process, so there is no
 * cache to wait out). Returns the store the key belonged to (null for a
 * platform key), or undefined when no key has this id. Revoking twice is a
 * no-op. The first revocation writes a `revoked` audit row naming `actor`
 * in the same statement.
 */
export async function revokeApiKey(
  db: Executor,
  id: string,
  options: { readonly actor?: ApiKeyActor } = {},
): Promise<{ storeId: string | null } | undefined> {
  const actor = checkActor(options.actor ?? UNKNOWN_ACTOR)
  if (!isBigintId(id)) return undefined
  const row = await keys.revokeKey(db, id, actor)
  return row ? { storeId: row.store_id } : undefined
}

/**
 * What is stored of a token: HMAC-SHA256 under the installation's secret
 * (`api_key_secret`). That secret lives in the same database as the hashes,
 * so it guards only against the `api_keys` rows leaking on their own (an
 * export of one table, a query result); a dump, backup or replica of the
 * whole database holds both, and whoever has it can test guesses offline.
 * What keeps tokens safe then is their 256 random bits, which no guessing,
 * online or offline, gets through, and a hash does not give back its token.
 * (Migration 0009's header says the table alone stops offline guessing;
 * that holds only while the secret is out of reach, which it is not here.)
 */
function tokenHash(secret: Buffer, token: string): Buffer {
  return createHmac('sha256', secret).update(token).digest()
}
