import { liveJobReferences, PermanentError, type Executor } from '@backroom/queue-core'
import { sql, type Kysely } from 'kysely'
import type { ShopDatabase } from '../../lib/shop-database.ts'
import type { FeedFormat, ImportTables } from '../import-tables.ts'

/** The largest part of an upload (the table's check). */
export const FEED_UPLOAD_PART_BYTES = 1024 * 1024

/** The largest upload accepted by default. */
export const DEFAULT_MAX_UPLOAD_BYTES = 512 * 1024 * 1024

/** What saveFeedUpload stores. */
export interface FeedUploadInput {
  readonly storeId: string
  readonly format: FeedFormat
  /** The file's bytes, e.g. a request body: read once, never held whole. */
  readonly body: AsyncIterable<Uint8Array>
  /** Refuse the upload past this many bytes (default 512 MiB). */
  readonly maxBytes?: number
  /** Bytes per stored part, at most 1 MiB (default; smaller in tests). */
  readonly partBytes?: number
  /** Bytes all of the store's uploads may hold, this one included; no quota when absent. */
  readonly quotaBytes?: number
  /** The body's announced size (Content-Length): an upload it shows over the quota is refused before a byte is stored. */
  readonly expectedBytes?: number
}

/** An upload refused for its size; nothing of it stays usable. */
export class FeedUploadTooLargeError extends Error {
  readonly code = 'feed_upload_too_large' as const
  readonly maxBytes: number
  constructor(maxBytes: number) {
    super(`the feed is larger than ${maxBytes} bytes`)
    this.name = 'FeedUploadTooLargeError'
    this.maxBytes = maxBytes
  }
}

/** An upload refused because the store's uploads would hold more than its quota; nothing of it is kept. */
export class FeedUploadQuotaError extends Error {
  readonly code = 'upload_quota_exceeded' as const
  readonly quotaBytes: number
  /** What the store's other uploads hold. */
  readonly usedBytes: number
  constructor(quotaBytes: number, usedBytes: number) {
    super(`the store's uploads would hold more than its quota of ${quotaBytes} bytes (${usedBytes} used)`)
    this.name = 'FeedUploadQuotaError'
    this.quotaBytes = quotaBytes
    this.usedBytes = usedBytes
  }
}

/**
 * Stores an uploaded feed for `import.products` (`{ uploadId }`), as parts of
 * at most 1 MiB written as they arrive: memory holds one part, whatever the
 * file's size. The upload is usable once this resolves; an upload cut off
 * midway (or refused for its size or the store's quota) leaves nothing.
 *
 * With `quotaBytes`, the store's stored bytes are checked before the first
 * part (with `expectedBytes`, to refuse early) and again in each part's
 * transaction, under a transaction-scoped advisory lock of the store: the
 * parts of one store's concurrent uploads are written one at a time, each
 * checked against every byte already stored, so what is kept never passes
 * the quota and the uploads that fit are kept (a check after the commit
 * instead let racing uploads all refuse one another).
 *
 * @example
 * const { uploadId } = await saveFeedUpload(deps.shop, { storeId, format: 'csv', body: req.raw })
 * await enqueue(db.kysely, { type: 'import.products', storeId, payload: { uploadId } })
 */
export async function saveFeedUpload(shop: Kysely<ShopDatabase>, input: FeedUploadInput): Promise<{ uploadId: string; bytes: number }> {
  const db = shop.withTables<ImportTables>()
  const maxBytes = input.maxBytes ?? DEFAULT_MAX_UPLOAD_BYTES
  const partBytes = Math.min(FEED_UPLOAD_PART_BYTES, Math.max(1, input.partBytes ?? FEED_UPLOAD_PART_BYTES))
  const quota = input.quotaBytes ?? null
  if (quota !== null) {
    const used = await storedBytes(db, input.storeId)
    if (used + (input.expectedBytes ?? 0) > quota || used >= quota) throw new FeedUploadQuotaError(quota, used)
  }
  const { upload_id: uploadId } = await db
    .insertInto('shop.feed_uploads')
    .values({ store_id: input.storeId, format: input.format, completed_at: null })
    .returning('upload_id')
    .executeTakeFirstOrThrow()
  // An upload cut short (too large, a dropped connection) leaves nothing behind.
  try {
    return await writeParts(db, { uploadId, storeId: input.storeId, body: input.body, maxBytes, partBytes, quota })
  } catch (err) {
    await db.deleteFrom('shop.feed_uploads').where('upload_id', '=', uploadId).execute()
    throw err
  }
}

/** The bytes a store's uploads hold (finished or being written). Index: feed_uploads_store_idx (store_id, created_at). */
async function storedBytes(db: Kysely<ShopDatabase & ImportTables>, storeId: string): Promise<number> {
  const row = await db
    .selectFrom('shop.feed_uploads')
    .select((eb) => eb.fn.coalesce(eb.fn.sum<string>('bytes'), eb.val('0')).as('bytes'))
    .where('store_id', '=', storeId)
    .executeTakeFirstOrThrow()
  return Number(row.bytes)
}

async function writeParts(
  db: Kysely<ShopDatabase & ImportTables>,
  args: { uploadId: string; storeId: string; body: AsyncIterable<Uint8Array>; maxBytes: number; partBytes: number; quota: number | null },
): Promise<{ uploadId: string; bytes: number }> {
  const { uploadId, body, maxBytes, partBytes } = args
  let partNo = 0
  let total = 0
  let written = 0
  let pending: Uint8Array[] = []
  let pendingBytes = 0
  const writePart = async (data: Uint8Array) => {
    // The part and the upload's running size commit together, so the store's sum counts every stored byte.
    await db.transaction().execute(async (trx) => {
      if (args.quota !== null) {
        // One store's parts are checked and written one at a time (see saveFeedUpload).
        await sql`select pg_advisory_xact_lock(hashtextextended(${`backroom.feed-upload-quota:${args.storeId}`}, 0))`.execute(trx)
        const used = await storedBytes(trx, args.storeId)
        if (used + data.byteLength > args.quota) throw new FeedUploadQuotaError(args.quota, used - written)
      }
      await trx.insertInto('shop.feed_upload_parts').values({ upload_id: uploadId, part_no: partNo, data }).execute()
      await trx
        .updateTable('shop.feed_uploads')
        .set((eb) => ({ parts: eb('parts', '+', 1), bytes: eb('bytes', '+', String(data.byteLength)) }))
        .where('upload_id', '=', uploadId)
        .execute()
    })
    partNo++
    written += data.byteLength
  }
  for await (const piece of body) {
    total += piece.byteLength
    if (total > maxBytes) throw new FeedUploadTooLargeError(maxBytes)
    pending.push(piece)
    pendingBytes += piece.byteLength
    while (pendingBytes >= partBytes) {
      const joined = Buffer.concat(pending)
      await writePart(joined.subarray(0, partBytes))
      const rest = joined.subarray(partBytes)
      pending = rest.byteLength > 0 ? [rest] : []
      pendingBytes = rest.byteLength
    }
  }
  if (pendingBytes > 0) await writePart(Buffer.concat(pending))
  await db.updateTable('shop.feed_uploads').set({ completed_at: new Date() }).where('upload_id', '=', uploadId).execute()
  return { uploadId, bytes: total }
}

/** An upload as an import sees it. */
export interface FeedUpload {
  readonly uploadId: string
  readonly format: FeedFormat
  readonly parts: number
  readonly bytes: number
  readonly complete: boolean
}

/** The store's upload, or null when it has none with this id (another store's is not found either). */
export async function findFeedUpload(shop: Kysely<ShopDatabase>, storeId: string, uploadId: string): Promise<FeedUpload | null> {
  const row = await shop
    .withTables<ImportTables>()
    .selectFrom('shop.feed_uploads')
    .select(['upload_id', 'format', 'parts', 'bytes', 'completed_at'])
    .where('upload_id', '=', uploadId)
    .where('store_id', '=', storeId)
    .executeTakeFirst()
  if (!row) return null
  return { uploadId: row.upload_id, format: row.format, parts: row.parts, bytes: Number(row.bytes), complete: row.completed_at !== null }
}

/** An upload's bytes, one part (≤ 1 MiB) in memory at a time. */
export async function* readFeedUpload(shop: Kysely<ShopDatabase>, upload: FeedUpload): AsyncGenerator<Uint8Array> {
  const db = shop.withTables<ImportTables>()
  for (let partNo = 0; partNo < upload.parts; partNo++) {
    const part = await db
      .selectFrom('shop.feed_upload_parts')
      .select('data')
      .where('upload_id', '=', upload.uploadId)
      .where('part_no', '=', partNo)
      .executeTakeFirst()
    // Parts are never deleted on their own: a gap is damage that no retry repairs.
    if (!part) throw new PermanentError('upload_corrupt', { message: `feed upload ${upload.uploadId} lacks part ${partNo}` })
    yield part.data
  }
}

/** The job type whose payload's `uploadId` names an upload (written out: this module must not load handler code). */
const IMPORT_JOB_TYPE = 'import.products'

/** Uploads looked at per call of {@link deleteExpiredFeedUploads} when the caller does not say. */
export const DEFAULT_EXPIRED_BATCH = 100

/** Where a sweep of expired uploads stopped: pass it back as `after` to go on. */
export interface ExpiredUploadsCursor {
  readonly createdAt: Date
  readonly uploadId: string
}

/** Options of {@link deleteExpiredFeedUploads}. */
export interface DeleteExpiredUploadsOptions {
  /** The queue's database (its live jobs say which uploads an import still needs). */
  readonly queue: Executor
  /** Uploads created before this instant have expired. */
  readonly before: Date
  /** Only this store's uploads; every store's when absent. */
  readonly storeId?: string
  /** Uploads looked at in this call: 1 to 1,000 (default 100). */
  readonly limit?: number
  /** Start after this upload (the previous call's `next`). */
  readonly after?: ExpiredUploadsCursor
}

/** What {@link deleteExpiredFeedUploads} did. */
export interface DeleteExpiredUploadsResult {
  readonly deleted: number
  /** Expired uploads kept because a live import job names them. */
  readonly kept: number
  /** Where to go on from; null when no expired upload is left past it. */
  readonly next: ExpiredUploadsCursor | null
}

/**
 * Deletes uploads created before `before` (their parts with them) unless a
 * live `import.products` job of the same store names them (`{ uploadId }`,
 * pending, scheduled, running or paused): a job waiting to run still
 * finds its file. A finished import's upload goes; a failed import retried
 * after that finds no upload and fails (an upload past its retention is
 * not kept for retries). Looks at `limit` uploads, oldest first, from
 * `after`; the result's `next` continues, so a sweep skips kept uploads
 * instead of meeting them again.
 *
 * A job enqueued naming an upload while this runs may lose the race and
 * find it gone; only uploads already past their retention can be lost so.
 *
 * @example
 * let after
 * do {
 *   const r = await deleteExpiredFeedUploads(shop, { queue: db.kysely, before: new Date(Date.now() - 72 * 3_600_000), after })
 *   after = r.next ?? undefined
 * } while (after)
 */
export async function deleteExpiredFeedUploads(
  shop: Kysely<ShopDatabase>,
  options: DeleteExpiredUploadsOptions,
): Promise<DeleteExpiredUploadsResult> {
  const db = shop.withTables<ImportTables>()
  const limit = options.limit ?? DEFAULT_EXPIRED_BATCH
  if (!Number.isInteger(limit) || limit < 1 || limit > 1_000) throw new RangeError('limit must be an integer from 1 to 1000')
  const after = options.after
  // Index: feed_uploads_store_idx (store_id, created_at) with a store, else
  // feed_uploads_created_idx (created_at, upload_id); oldest first, keyset from `after`.
  const candidates = await db
    .selectFrom('shop.feed_uploads')
    .select(['upload_id', 'store_id', 'created_at'])
    .where('created_at', '<', options.before)
    .$if(options.storeId !== undefined, (qb) => qb.where('store_id', '=', options.storeId!))
    .$if(after !== undefined, (qb) =>
      qb.where((eb) => eb.or([eb('created_at', '>', after!.createdAt), eb.and([eb('created_at', '=', after!.createdAt), eb('upload_id', '>', after!.uploadId)])])),
    )
    .orderBy('created_at')
    .orderBy('upload_id')
    .limit(limit)
    .execute()
  if (candidates.length === 0) return { deleted: 0, kept: 0, next: null }
  const named = await liveJobReferences(options.queue, {
    type: IMPORT_JOB_TYPE,
    field: 'uploadId',
    refs: candidates.map((c) => ({ storeId: c.store_id, value: String(c.upload_id) })),
  })
  const keep = new Set(named.map((r) => `${r.storeId}/${r.value}`))
  const doomed = candidates.filter((c) => !keep.has(`${c.store_id}/${c.upload_id}`)).map((c) => c.upload_id)
  let deleted = 0
  if (doomed.length > 0) {
    // Index: the primary key; `created_at` again so an id never names a newer upload. Parts go by the foreign key's cascade.
    const result = await db.deleteFrom('shop.feed_uploads').where('upload_id', 'in', doomed).where('created_at', '<', options.before).executeTakeFirst()
    deleted = Number(result.numDeletedRows)
  }
  const last = candidates[candidates.length - 1]!
  return {
    deleted,
    kept: candidates.length - doomed.length,
    next: candidates.length < limit ? null : { createdAt: last.created_at, uploadId: String(last.upload_id) },
  }
}
