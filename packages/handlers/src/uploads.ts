/**
 * `@backroom/handlers/uploads`: storing feed files for `import.products`
 * (`{ uploadId }` payloads), without handler code, so the API can accept
 * uploads and still never load handlers.
 */
export { saveFeedUpload, FeedUploadTooLargeError, DEFAULT_MAX_UPLOAD_BYTES, type FeedUploadInput } from './import/feed/feed-uploads.ts'
export { shopView } from './lib/shop-view.ts'
export { migrateShop } from './lib/shop-migrations.ts'
export type { FeedFormat } from './import/import-tables.ts'
