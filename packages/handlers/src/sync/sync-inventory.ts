import { defineHandler, type Handler } from '@backroom/queue-core'
import type { HandlerDeps } from '../lib/deps.ts'
import { idempotencyKey } from '../lib/idempotency-key.ts'
import { UpstreamError } from '../lib/upstream-error.ts'
import { urlGuardFor } from '../lib/url-guard.ts'
import { chunkSkus, fetchLevelsPage, INVENTORY_SERVICE, inventoryApiConfig } from './inventory-api.ts'
import { applyLevels, recordSyncFinished, recordSyncStarted, type InventoryTables, type SyncKind, type SyncTally } from './inventory-syncs.ts'
import { ALL_SKUS, MAX_SKUS_PER_ENQUEUE, SyncInventoryJobPayload } from './sync-inventory-payload.ts'
import { SYNC_INVENTORY_TYPE } from './sync-inventory-type-settings.ts'

/** Extend the lease every this many pages (progress writes do not). */
const HEARTBEAT_EVERY_PAGES = 10

/** Most unknown SKUs listed in the result (all are counted). */
const MAX_UNKNOWN_LISTED = 100

/** What a finished sync returns (the job's result). */
export interface SyncInventoryResult extends SyncTally {
  readonly kind: SyncKind
  /** Targeted syncs: distinct SKUs asked for, and how many of them the source did not return. */
  readonly requested?: number
  readonly notReturned?: number
  /** The first unknown SKUs (no product in the store), sorted per page; `unknownSkus` counts them all. */
  readonly unknownSample: ReadonlyArray<string>
}

/**
 * `sync.inventory`: pulls the store's stock levels from the inventory API
 * (see inventory-api.ts for the protocol) and sets `shop.products.stock`.
 *
 * - Full sync (no SKUs, or `"*"` among them): pages through every level.
 *   Targeted: asks for the SKUs in chunks of up to 500, each paged too.
 * - Only existing products are updated; unknown SKUs are counted and listed
 *   (up to 100) in the result. A level older than the one already applied is
 *   skipped (`stock_updated_at`), so every step is safe to repeat: a retry
 *   simply starts over.
 * - Reports `{ pages, levels }` progress per page, heartbeats every 10 pages,
 *   stops at the run's abort signal.
 * - Endpoint and key from INVENTORY_API_URL / INVENTORY_API_KEY (timeout:
 *   INVENTORY_API_TIMEOUT_MS); missing ones fail the job `not_configured`.
 */
export function createSyncInventory(deps: HandlerDeps): Handler {
  const shop = deps.shop.withTables<InventoryTables>()
  return defineHandler({
    type: SYNC_INVENTORY_TYPE,
    payload: SyncInventoryJobPayload,
    maxAttempts: 8,
    // A full sync of a large store is many pages; the lease is kept by heartbeats.
    timeoutMs: 15 * 60_000,
    async run(payload, ctx): Promise<SyncInventoryResult> {
      const api = inventoryApiConfig(deps.env, urlGuardFor(deps))
      const { job, log, signal } = ctx
      const storeId = job.storeId
      const targeted = payload.skus && payload.skus.length > 0 && !payload.skus.includes(ALL_SKUS) ? [...new Set(payload.skus)] : null
      const kind: SyncKind = targeted ? 'skus' : 'full'
      // null: one unfiltered listing. Coalescing can append duplicates; asked once each.
      const requests: ReadonlyArray<string[] | null> = targeted ? chunkSkus(targeted, MAX_SKUS_PER_ENQUEUE) : [null]
      log.info({ kind, skus: targeted?.length ?? null, requests: requests.length }, 'inventory sync started')
      await recordSyncStarted(shop, { storeId, jobId: job.id })

      let pages = 0
      let levels = 0
      let applied = 0
      let skipped = 0
      let unknownSkus = 0
      const unknownSample: string[] = []
      const returned = targeted ? new Set<string>() : null
      for (const [chunk, skus] of requests.entries()) {
        let cursor: string | null = null
        const cursorsSeen = new Set<string>()
        do {
          signal.throwIfAborted()
          const page = await fetchLevelsPage(ctx, api, {
            storeId,
            cursor,
            skus,
            idempotencyKey: idempotencyKey(job, `levels:${chunk}:${cursorsSeen.size}`),
            rateKey: `${INVENTORY_SERVICE}:${storeId}`,
          })
          const done = await applyLevels(shop, storeId, page.levels)
          pages += 1
          levels += page.levels.length
          applied += done.applied
          skipped += done.skipped
          unknownSkus += done.unknown.length
          unknownSample.push(...done.unknown.slice(0, MAX_UNKNOWN_LISTED - unknownSample.length))
          for (const level of page.levels) returned?.add(level.sku)
          await ctx.progress({ pages, levels })
          if (pages % HEARTBEAT_EVERY_PAGES === 0) await ctx.heartbeat()
          cursor = page.nextCursor
          // A provider that hands back a cursor again would page forever.
          if (cursor !== null && cursorsSeen.has(cursor)) {
            throw new UpstreamError(INVENTORY_SERVICE, 'malformed_response', { status: 200, message: 'inventory: nextCursor repeats an earlier cursor' })
          }
          if (cursor !== null) cursorsSeen.add(cursor)
        } while (cursor !== null)
      }

      const tally: SyncTally = { pages, levels, applied, skipped, unknownSkus }
      await recordSyncFinished(shop, { storeId, jobId: job.id, kind, tally })
      const notReturned = targeted && returned ? targeted.filter((sku) => !returned.has(sku)).length : undefined
      log.info({ kind, ...tally, notReturned }, 'inventory synced')
      return {
        kind,
        ...tally,
        ...(targeted ? { requested: targeted.length, notReturned } : {}),
        unknownSample,
      }
    },
  })
}
