import type { EnqueueSpec } from '@backroom/queue-core'
import { ALL_SKUS } from './sync-inventory-payload.ts'
import { SYNC_INVENTORY_TYPE } from './sync-inventory-type-settings.ts'

/** The coalesce key every `sync.inventory` enqueue of a store shares. */
export const SYNC_INVENTORY_COALESCE_KEY = 'inventory'

/** The payload of a coalescing `sync.inventory` enqueue. */
export interface SyncInventorySpecPayload {
  readonly skus: ReadonlyArray<string>
}

/**
 * The enqueue spec of a coalescing inventory sync for a store: with `skus`,
 * just those; without (or empty), a full sync, written as `["*"]` so that it
 * survives being folded with targeted syncs (see ALL_SKUS). Needs
 * configureSyncInventory() to have run.
 *
 * @example
 * await enqueue(db.kysely, syncInventorySpec('store-42', ['SKU-1']))  // a stock webhook
 * await enqueue(db.kysely, syncInventorySpec('store-42'))             // nightly full sync
 */
export function syncInventorySpec(storeId: string, skus?: ReadonlyArray<string>): EnqueueSpec<SyncInventorySpecPayload> {
  return {
    type: SYNC_INVENTORY_TYPE,
    storeId,
    payload: { skus: skus && skus.length > 0 ? [...skus] : [ALL_SKUS] },
    coalesceKey: SYNC_INVENTORY_COALESCE_KEY,
  }
}
