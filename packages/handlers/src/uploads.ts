/**
 * `@backroom/handlers/uploads`: storing feed files for `import.products`
 * (`{ uploadId }` payloads), without handler code, so the API can accept
 * uploads and still never load handlers.
 */
export {
  saveFeedUpload,
  deleteExpiredFeedUploads,
  FeedUploadTooLargeError,
  FeedUploadQuotaError,
  DEFAULT_MAX_UPLOAD_BYTES,
  DEFAULT_EXPIRED_BATCH,
  type FeedUploadInput,
  type DeleteExpiredUploadsOptions,
  type DeleteExpiredUploadsResult,
  type ExpiredUploadsCursor,
} from './import/feed/feed-uploads.ts'
export { shopView } from './lib/shop-view.ts'
export { migrateShop } from './lib/shop-migrations.ts'
export type { FeedFormat } from './import/import-tables.ts'
