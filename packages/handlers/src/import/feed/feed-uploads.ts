import { PermanentError } from '@backroom/queue-core'
import type { Kysely } from 'kysely'
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

/**
 * Stores an uploaded feed for `import.products` (`{ uploadId }`), as parts of
 * at most 1 MiB written as they arrive: memory holds one part, whatever the
 * file's size. The upload is usable once this resolves; an upload cut off
 * midway (or refused for its size) stays incomplete and imports refuse it.
 *
 * @example
 * const { uploadId } = await saveFeedUpload(deps.shop, { storeId, format: 'csv', body: req.raw })
 * await enqueue(db.kysely, { type: 'import.products', storeId, payload: { uploadId } })
 */
export async function saveFeedUpload(shop: Kysely<ShopDatabase>, input: FeedUploadInput): Promise<{ uploadId: string; bytes: number }> {
  const db = shop.withTables<ImportTables>()
  const maxBytes = input.maxBytes ?? DEFAULT_MAX_UPLOAD_BYTES
  const partBytes = Math.min(FEED_UPLOAD_PART_BYTES, Math.max(1, input.partBytes ?? FEED_UPLOAD_PART_BYTES))
  const { upload_id: uploadId } = await db
    .insertInto('shop.feed_uploads')
    .values({ store_id: input.storeId, format: input.format, completed_at: null })
    .returning('upload_id')
    .executeTakeFirstOrThrow()
  // An upload cut short (too large, a dropped connection) leaves nothing behind.
  try {
    return await writeParts(db, uploadId, input.body, maxBytes, partBytes)
  } catch (err) {
    await db.deleteFrom('shop.feed_uploads').where('upload_id', '=', uploadId).execute()
    throw err
  }
}

async function writeParts(
  db: Kysely<ShopDatabase & ImportTables>,
  uploadId: string,
  body: AsyncIterable<Uint8Array>,
  maxBytes: number,
  partBytes: number,
): Promise<{ uploadId: string; bytes: number }> {
  let partNo = 0
  let total = 0
  let pending: Uint8Array[] = []
  let pendingBytes = 0
  const writePart = async (data: Uint8Array) => {
    await db.insertInto('shop.feed_upload_parts').values({ upload_id: uploadId, part_no: partNo, data }).execute()
    partNo++
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
  await db
    .updateTable('shop.feed_uploads')
    .set({ parts: partNo, bytes: total, completed_at: new Date() })
    .where('upload_id', '=', uploadId)
    .execute()
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
