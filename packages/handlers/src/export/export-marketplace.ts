import { defineHandler, type Handler } from '@backroom/queue-core'
import type { HandlerDeps } from '../lib/deps.ts'
import { idempotencyKey } from '../lib/idempotency-key.ts'
import { urlGuardFor } from '../lib/url-guard.ts'
import { buildFeedFile } from './build-feed-file.ts'
import { csvFeed } from './csv-feed.ts'
import { ExportMarketplacePayload } from './export-marketplace-payload.ts'
import { readMarketplaceConfig } from './marketplace-config.ts'
import { finishExport, openExport, recordBuilt, type ExportTables, type MarketplaceExport } from './marketplace-exports.ts'
import { ensureRateLimit, feedRateKey, uploadFeed } from './upload-feed.ts'
import { createXmlFeed } from './xml-feed.ts'

/** The job type. */
export const EXPORT_MARKETPLACE_TYPE = 'export.marketplace'

/** What a finished export job returns (kept as the job's result). */
export interface ExportMarketplaceResult {
  readonly exportId: string
  readonly marketplace: string
  readonly format: 'csv' | 'xml'
  readonly state: 'uploaded' | 'empty'
  readonly productCount: number
  readonly bytes: number
  readonly sha256: string | null
  readonly feedId: string | null
}

/** Tuning of {@link createExportMarketplace}; the defaults suit production. */
export interface ExportMarketplaceOptions {
  /** Products per keyset query (default DEFAULT_FEED_BATCH_SIZE, 1,000). */
  readonly batchSize?: number
}

/**
 * `export.marketplace`: builds a store's product feed (CSV or an RSS 2.0
 * Merchant-style XML) into a temporary file in constant memory, then uploads
 * it to the marketplace API under the per-(marketplace, store) rate limit.
 *
 * Every step is safe to run again: the export row (id = job id) is opened
 * once; a run that finds it `uploaded` or `empty` returns what it recorded
 * and sends nothing; a run after a crash between upload and record rebuilds
 * the feed and re-sends it to the same URL with the same Idempotency-Key.
 * An empty catalogue uploads nothing: marketplaces treat a feed as the full
 * listing, so an empty one would delist every product of the store, and an
 * empty catalogue is likelier a failed import than a wish to delist.
 *
 * Reads MARKETPLACE_API_URL and MARKETPLACE_API_KEY (required),
 * MARKETPLACE_TIMEOUT_MS and MARKETPLACE_RATE_PER_SEC from `deps.env`.
 *
 * @example
 * const handlers = [createExportMarketplace(deps)]
 * await enqueue(db.kysely, { type: 'export.marketplace', storeId, payload: { marketplace: 'acme', format: 'xml' } })
 */
export function createExportMarketplace(
  deps: HandlerDeps,
  options: ExportMarketplaceOptions = {},
): Handler<typeof ExportMarketplacePayload> {
  const shop = deps.shop.withTables<ExportTables>()
  return defineHandler({
    type: EXPORT_MARKETPLACE_TYPE,
    payload: ExportMarketplacePayload,
    maxAttempts: 8,
    // Room for a large catalogue's build plus an upload of up to MARKETPLACE_TIMEOUT_MS (2 min by default).
    timeoutMs: 30 * 60_000,
    async run({ marketplace, format }, ctx): Promise<ExportMarketplaceResult> {
      const config = readMarketplaceConfig(deps.env, urlGuardFor(deps))
      const { job, log, signal } = ctx
      const storeId = job.storeId
      const opened = await openExport(shop, { id: job.id, storeId, marketplace, format })
      if (opened.state !== 'building') {
        log.info({ exportId: opened.id, state: opened.state }, 'export already finished; nothing sent')
        return resultOf(opened)
      }

      const writer = format === 'csv' ? csvFeed : createXmlFeed(await channelOf(deps, storeId, marketplace))
      const file = await buildFeedFile(deps.shop, {
        storeId,
        writer,
        signal,
        batchSize: options.batchSize,
        onBatch: (productCount) => ctx.progress({ phase: 'building', productCount }),
      })
      try {
        const built = { productCount: file.productCount, bytes: file.bytes, sha256: file.sha256 }
        await recordBuilt(shop, job.id, built)
        log.info({ exportId: job.id, marketplace, format, ...built }, 'feed built')
        if (file.productCount === 0) {
          await finishExport(shop, job.id, { state: 'empty' })
          log.info({ exportId: job.id, marketplace }, 'catalogue empty; nothing uploaded')
          return { exportId: job.id, marketplace, format, state: 'empty', ...built, feedId: null }
        }

        await ctx.progress({ phase: 'uploading', productCount: file.productCount, bytes: file.bytes })
        const rateKey = feedRateKey(marketplace, storeId)
        await ensureRateLimit(deps.db.kysely, rateKey, config.ratePerSecond)
        const accepted = await uploadFeed(
          ctx,
          config,
          {
            marketplace,
            storeId,
            exportId: job.id,
            path: file.path,
            bytes: file.bytes,
            sha256: file.sha256,
            contentType: writer.contentType,
            idempotencyKey: idempotencyKey(job, 'upload'),
          },
          rateKey,
        )
        await finishExport(shop, job.id, { state: 'uploaded', remoteFeedId: accepted.feedId })
        log.info({ exportId: job.id, marketplace, feedId: accepted.feedId }, 'feed uploaded')
        return { exportId: job.id, marketplace, format, state: 'uploaded', ...built, feedId: accepted.feedId }
      } finally {
        await file.remove()
      }
    },
  })
}

/** The XML channel's title and description: the store's name when it has one. */
async function channelOf(deps: HandlerDeps, storeId: string, marketplace: string): Promise<{ title: string; description: string }> {
  const store = await deps.shop.selectFrom('shop.stores').select('name').where('store_id', '=', storeId).executeTakeFirst()
  const title = store?.name || storeId
  return { title, description: `Products of ${title} for ${marketplace}` }
}

/** The result of an export finished by an earlier run. */
function resultOf(row: MarketplaceExport): ExportMarketplaceResult {
  return {
    exportId: row.id,
    marketplace: row.marketplace,
    format: row.format,
    state: row.state === 'empty' ? 'empty' : 'uploaded',
    productCount: row.productCount ?? 0,
    bytes: row.bytes ?? 0,
    sha256: row.sha256,
    feedId: row.remoteFeedId,
  }
}
