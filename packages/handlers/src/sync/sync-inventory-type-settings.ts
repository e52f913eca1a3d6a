import { configureJobType, type Executor, type JobTypeColumns } from '@backroom/queue-core'
import { MAX_FOLDED_ENQUEUES } from './sync-inventory-payload.ts'

/** The job type this folder defines. */
export const SYNC_INVENTORY_TYPE = 'sync.inventory'

/**
 * Operator settings of `sync.inventory` (the configureJobType columns):
 * - coalesce `append` on `skus`: stock webhooks for one store arriving within
 *   2 s fold into one pending job holding every SKU they named (up to 100
 *   enqueues; the 101st seals the job, due at once, and opens the next).
 *   2 s keeps stock fresh while turning a burst of webhooks into one request.
 * - one running sync per store: the inventory API rate-limits per store, and
 *   a sync that starts after another finished reads levels at least as new.
 *   Concurrent runs would still be correct (writes are guarded by
 *   `stock_updated_at`), only wasteful.
 */
export const syncInventoryTypeSettings = {
  maxRunningPerStore: 1,
  coalesce: { strategy: 'append', field: 'skus', maxDelayMs: 2_000, maxBatch: MAX_FOLDED_ENQUEUES },
} as const satisfies JobTypeColumns

/**
 * Applies {@link syncInventoryTypeSettings}. Call once at worker (or API)
 * start-up, before anything enqueues with a coalesce key: queue-core refuses a
 * coalesceKey for a type that does not coalesce. Idempotent.
 *
 * @example
 * await configureSyncInventory(db.kysely)
 */
export async function configureSyncInventory(db: Executor): Promise<void> {
  await configureJobType(db, SYNC_INVENTORY_TYPE, syncInventoryTypeSettings)
}
