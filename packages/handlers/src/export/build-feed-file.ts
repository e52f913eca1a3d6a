import { createHash } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { finished } from 'node:stream/promises'
import type { Kysely } from 'kysely'
import type { ShopDatabase } from '../lib/shop-database.ts'
import type { FeedProduct, FeedWriter } from './feed-product.ts'

/** Products read per query: one batch is all the catalogue ever held in memory. */
export const DEFAULT_FEED_BATCH_SIZE = 1_000

/** A feed written to a temporary file. */
export interface FeedFile {
  readonly path: string
  readonly productCount: number
  readonly bytes: number
  /** Hex SHA-256 of the file's bytes, computed while writing. */
  readonly sha256: string
  /** Deletes the file and its temporary folder (safe to call twice). */
  remove(): Promise<void>
}

/** Options of {@link buildFeedFile}. */
export interface BuildFeedOptions {
  readonly storeId: string
  readonly writer: FeedWriter
  /** Aborts between batches (the run's signal: cancel, timeout, shutdown). */
  readonly signal: AbortSignal
  readonly batchSize?: number
  /** Called after each batch with the products written so far (progress reports). */
  readonly onBatch?: (productCount: number) => Promise<void> | void
}

/**
 * Writes a store's feed to a file under os.tmpdir(), reading `shop.products`
 * by keyset pagination on the primary key (store_id, sku), so memory stays
 * at one batch whatever the catalogue's size, and no query gets slower as
 * the export advances (no OFFSET). The SHA-256 and size are computed from
 * the bytes as they are written, so the file is never read back for them.
 *
 * Each batch is its own statement, not one snapshot: a product changed
 * during the export appears as it was when its batch was read.
 *
 * The caller owns the file and must `remove()` it; on failure it is removed here.
 */
export async function buildFeedFile(shop: Kysely<ShopDatabase>, options: BuildFeedOptions): Promise<FeedFile> {
  const batchSize = options.batchSize ?? DEFAULT_FEED_BATCH_SIZE
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError('batchSize must be a whole number of at least 1')
  const dir = await mkdtemp(path.join(tmpdir(), 'backroom-feed-'))
  const remove = () => rm(dir, { recursive: true, force: true })
  const filePath = path.join(dir, 'feed')
  const out = createWriteStream(filePath)
  // Without a listener, a disk error (ENOSPC) between writes would crash the worker.
  let failure: unknown = null
  out.on('error', (err) => {
    failure = err
  })
  const hash = createHash('sha256')
  let bytes = 0
  const write = async (text: string): Promise<void> => {
    if (failure) throw failure
    if (text.length === 0) return
    const chunk = Buffer.from(text, 'utf8')
    hash.update(chunk)
    bytes += chunk.length
    // Honour backpressure: a slow disk must not make the batches pile up in memory.
    if (!out.write(chunk)) await once(out, 'drain', { signal: options.signal })
  }
  try {
    await write(options.writer.header())
    let productCount = 0
    let after: string | null = null
    for (;;) {
      options.signal.throwIfAborted()
      const batch = await readBatch(shop, options.storeId, after, batchSize)
      // One write per batch: far fewer stream calls than one per product.
      await write(batch.map((p) => options.writer.item(p)).join(''))
      productCount += batch.length
      if (batch.length > 0) await options.onBatch?.(productCount)
      if (batch.length < batchSize) break
      after = batch[batch.length - 1]!.sku
    }
    await write(options.writer.footer())
    out.end()
    await finished(out)
    return { path: filePath, productCount, bytes, sha256: hash.digest('hex'), remove }
  } catch (err) {
    out.destroy()
    await remove()
    throw err
  }
}

/** The next `limit` products of a store after SKU `after` (served by the (store_id, sku) primary key). */
async function readBatch(shop: Kysely<ShopDatabase>, storeId: string, after: string | null, limit: number): Promise<FeedProduct[]> {
  let query = shop
    .selectFrom('shop.products')
    .select(['sku', 'title', 'description', 'price', 'currency', 'stock'])
    .where('store_id', '=', storeId)
  if (after !== null) query = query.where('sku', '>', after)
  return query.orderBy('sku').limit(limit).execute()
}
