import * as audit from './db/api-key-audit.ts'
import type { Executor } from './db/database.ts'
import { ValidationError } from './errors.ts'
import { decodeCursor, encodeCursor } from './list-jobs.ts'
import { isBigintId } from './validate.ts'

/**
 * Who created or revoked a key, as the audit records it: a key id (the
 * platform key that called the API), `admin` or `admin-previous`
 * (BACKROOM_ADMIN_KEY, or its predecessor during a rotation), `cli`
 * (`pnpm backroom keys`), `unknown` (the caller did not say).
 */
export type ApiKeyActor = string

/** The actor recorded when a caller of createApiKey / revokeApiKey names none. */
export const UNKNOWN_ACTOR = 'unknown'

/** The admin keys' names in the audit (they have no api_keys row). */
export const ADMIN_KEY_IDS = ['admin', 'admin-previous'] as const
/** `admin`: BACKROOM_ADMIN_KEY; `admin-previous`: BACKROOM_ADMIN_KEY_PREVIOUS during a rotation. */
export type AdminKeyId = (typeof ADMIN_KEY_IDS)[number]

const NAMED_ACTORS: ReadonlyArray<string> = [...ADMIN_KEY_IDS, 'cli', UNKNOWN_ACTOR]

/** Throws ValidationError unless `actor` is one the audit can record; returns it. */
export function checkActor(actor: unknown): ApiKeyActor {
  if (typeof actor === 'string' && (isBigintId(actor) || NAMED_ACTORS.includes(actor))) return actor
  throw new ValidationError(`actor must be a key id or one of ${NAMED_ACTORS.join(', ')}`, { field: 'actor' })
}

/** One row of a key's audit. */
export interface ApiKeyEvent {
  /** `created` / `revoked`: one change; `used`: the key's uses within one hour. */
  readonly event: 'created' | 'revoked' | 'used'
  /** A key id, `admin` or `admin-previous`. */
  readonly keyId: string
  /** The key's store; null for a platform key. */
  readonly storeId: string | null
  /** Who made the change; null on `used` rows. */
  readonly actor: ApiKeyActor | null
  /** When the change happened; on `used` rows, the start of the hour. */
  readonly at: Date
  /** Authenticated requests in the hour (`used` rows only). */
  readonly uses: number | null
  readonly firstUsedAt: Date | null
  readonly lastUsedAt: Date | null
}

/** One page of a key's audit, newest first. */
export interface ApiKeyEventPage {
  readonly events: ReadonlyArray<ApiKeyEvent>
  /** Pass as `cursor` for the next page; null on the last page. */
  readonly nextCursor: string | null
}

/** Audit rows per page when `limit` is not given. */
export const DEFAULT_AUDIT_PAGE = 50
/** Largest page {@link listApiKeyEvents} returns. */
export const MAX_AUDIT_PAGE = 100

/**
 * A key's audit, newest first by `at` (a `used` row sorts at its hour's
 * start, so it keeps its place as its counts grow), one page at a time
 * with a keyset cursor. `keyId` is a key id, `admin` or
 * `admin-previous`. Returns null when no key has this id (revoked keys
 * still have theirs). Throws {@link ValidationError} for a bad limit or
 * cursor.
 *
 * @example
 * const page = await listApiKeyEvents(db.kysely, '42', { limit: 20 })
 */
export async function listApiKeyEvents(
  db: Executor,
  keyId: string,
  options: { readonly limit?: number; readonly cursor?: string } = {},
): Promise<ApiKeyEventPage | null> {
  const limit = options.limit ?? DEFAULT_AUDIT_PAGE
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_AUDIT_PAGE) {
    throw new ValidationError(`limit: must be an integer from 1 to ${MAX_AUDIT_PAGE}`, { field: 'limit' })
  }
  const beforeId = options.cursor === undefined ? null : decodeCursor(options.cursor)
  const known = (ADMIN_KEY_IDS as ReadonlyArray<string>).includes(keyId) || (isBigintId(keyId) && (await audit.keyExists(db, keyId)))
  if (!known) return null
  // One more than the page: whether it comes back says if another page follows.
  const rows = await audit.listKeyAudit(db, { keyId, beforeId, take: limit + 1 })
  const more = rows.length > limit
  const page = more ? rows.slice(0, limit) : rows
  return {
    events: page.map((row) => ({
      event: row.event,
      keyId: row.key_id,
      storeId: row.store_id,
      actor: row.actor,
      at: row.at,
      uses: row.uses === null ? null : Number(row.uses),
      firstUsedAt: row.first_used_at,
      lastUsedAt: row.last_used_at,
    })),
    nextCursor: more ? encodeCursor(page[page.length - 1]!.id) : null,
  }
}

/** One key's uses within one hour, counted by a process (see {@link recordApiKeyUses}). */
export type ApiKeyUseCount = audit.KeyUseCount

/**
 * Adds use counts to the audit in one statement (an upsert per key and
 * hour that adds to what other processes wrote). For a process that counts
 * authenticated requests in memory and flushes every few seconds, so a
 * request itself costs no statement.
 */
export async function recordApiKeyUses(db: Executor, counts: ReadonlyArray<ApiKeyUseCount>): Promise<void> {
  await audit.addKeyUses(db, counts)
}

/** Rows one statement of {@link deleteExpiredApiKeyAudit} deletes at most. */
const DELETE_BATCH = 5_000

/**
 * Deletes audit rows older than `before` (a `used` row by its hour's start),
 * in bounded statements, at most `maxRows` per call (the next call goes
 * on). Returns how many went.
 *
 * @example
 * await deleteExpiredApiKeyAudit(db.kysely, { before: new Date(Date.now() - 90 * 86_400_000) })
 */
export async function deleteExpiredApiKeyAudit(db: Executor, options: { readonly before: Date; readonly maxRows?: number }): Promise<number> {
  const maxRows = options.maxRows ?? 100_000
  let deleted = 0
  while (deleted < maxRows) {
    const batch = Math.min(DELETE_BATCH, maxRows - deleted)
    const n = await audit.deleteAuditBefore(db, options.before, batch)
    deleted += n
    if (n < batch) break
  }
  return deleted
}
