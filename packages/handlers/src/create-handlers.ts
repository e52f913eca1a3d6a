import type { Handler } from '@backroom/queue-core'
import { createExportMarketplace } from './export/export-marketplace.ts'
import { createImportProducts, createImportProductsChunk } from './import/import-products.ts'
import { createInstallPlugin } from './install/install-plugin.ts'
import type { HandlerDeps } from './lib/deps.ts'
import { createSyncInventory } from './sync/sync-inventory.ts'
import { canary } from './system/canary.ts'
import { createTranslateUi } from './translation/translate-ui.ts'

/**
 * Every job type's handler, built over the worker's database and
 * environment. A new job type adds its folder and one line here (and its
 * payload schema in schemas.ts).
 *
 * @example
 * const handlers = createHandlers(handlerDeps(db, process.env))
 */
export function createHandlers(deps: HandlerDeps): ReadonlyArray<Handler> {
  return [
    canary,
    createTranslateUi(deps),
    createImportProducts(deps),
    createImportProductsChunk(deps),
    createSyncInventory(deps),
    createInstallPlugin(deps),
    createExportMarketplace(deps),
  ] as ReadonlyArray<Handler>
}
