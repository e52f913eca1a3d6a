import { configureJobType, type Executor } from '@backroom/queue-core'
import { importTypeSettings } from './import/import-products.ts'
import { configureSyncInventory } from './sync/sync-inventory-type-settings.ts'

/**
 * Applies the queue settings the handlers depend on (coalescing, per-store
 * limits), as their folders declare them. The worker calls it at start-up,
 * before it claims anything; it is idempotent. An operator's change to these
 * types through configureJobType lasts until the next worker start: change
 * the folder's settings constant to make it stick.
 */
export async function configureJobTypes(db: Executor): Promise<void> {
  await configureSyncInventory(db)
  for (const [type, settings] of Object.entries(importTypeSettings)) await configureJobType(db, type, settings)
}
