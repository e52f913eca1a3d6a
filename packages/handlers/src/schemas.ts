import type { TSchema } from 'typebox'
import { ExportMarketplacePayload } from './export/export-marketplace-payload.ts'
import { ImportProductsChunkPayload, ImportProductsPayload } from './import/import-products-payload.ts'
import { InstallPluginPayload } from './install/install-plugin-payload.ts'
import { SyncInventoryPayload } from './sync/sync-inventory-payload.ts'
import { CanaryPayload } from './system/canary-payload.ts'
import { TranslateUiPayload } from './translation/translate-ui-payload.ts'

/**
 * Payload schemas by job type, without handler code: the API validates
 * enqueued payloads with these and never loads handlers or their clients.
 */
export const payloadSchemas: Readonly<Record<string, TSchema>> = {
  'system.canary': CanaryPayload,
  'translation.ui': TranslateUiPayload,
  'import.products': ImportProductsPayload,
  'import.products.chunk': ImportProductsChunkPayload,
  'sync.inventory': SyncInventoryPayload,
  'install.plugin': InstallPluginPayload,
  'export.marketplace': ExportMarketplacePayload,
}

/** Every job type this package defines (the keys of payloadSchemas). */
export const jobTypes: ReadonlyArray<string> = Object.keys(payloadSchemas)

export { CanaryPayload, TranslateUiPayload, ImportProductsPayload, ImportProductsChunkPayload, SyncInventoryPayload, InstallPluginPayload, ExportMarketplacePayload }
