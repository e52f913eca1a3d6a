import type { ColumnType, Generated } from 'kysely'
import type { ShopDatabase } from '../lib/shop-database.ts'

/** The feed formats an import reads. */
export const FEED_FORMATS = ['csv', 'jsonl'] as const
export type FeedFormat = (typeof FEED_FORMATS)[number]

/**
 * Where an import stands: staging the feed, waiting on its chunks, finished,
 * or cancelled (its parent job was cancelled: shop/0009).
 */
export const IMPORT_STATES = ['staging', 'running', 'done', 'cancelled'] as const
export type ImportState = (typeof IMPORT_STATES)[number]

/**
 * A chunk job's state as the import sees it: `done` once its rows are
 * applied (in the same transaction), `failed` when its job failed,
 * `cancelled` when the import was cancelled before it applied them.
 */
export const CHUNK_STATES = ['pending', 'done', 'failed', 'cancelled'] as const
export type ChunkState = (typeof CHUNK_STATES)[number]

/**
 * Why a feed line was rejected, as stored with its error row:
 * - `invalid_field`: a field is missing or has a bad value (price, currency…);
 * - `field_too_large`: a field is over its bound (ROW_LIMITS);
 * - `row_too_large`: the line is over the reader's bound (MAX_RECORD_BYTES), so it was not read;
 * - `invalid_encoding`: the line's bytes are not UTF-8;
 * - `invalid_character`: text PostgreSQL cannot store (NUL, a lone surrogate) or control characters in a SKU;
 * - `malformed_row`: not a CSV record of the header's width, not a JSON object, a quote never closed;
 * - `unstorable_row`: the line passed these checks and the database refused it still;
 * - `invalid_row`: a line rejected before codes were recorded.
 */
export const ROW_ERROR_CODES = [
  'invalid_field',
  'field_too_large',
  'row_too_large',
  'invalid_encoding',
  'invalid_character',
  'malformed_row',
  'unstorable_row',
  'invalid_row',
] as const
export type RowErrorCode = (typeof ROW_ERROR_CODES)[number]

/** bigint columns: pg returns them as strings (exact), we may write numbers. */
type BigIntColumn = ColumnType<string, string | number, string | number>

/** `shop.feed_uploads` (infra/migrations/shop/0003). */
export interface FeedUploadTable {
  readonly upload_id: Generated<string>
  readonly store_id: string
  readonly format: FeedFormat
  parts: Generated<number>
  bytes: ColumnType<string, string | number | undefined, string | number>
  created_at: Generated<Date>
  completed_at: Date | null
}

/** `shop.feed_upload_parts`: an upload's bytes in parts of at most 1 MiB. */
export interface FeedUploadPartTable {
  readonly upload_id: BigIntColumn
  readonly part_no: number
  readonly data: Uint8Array
}

/** `shop.product_imports`: one row per import, keyed by its parent job's id. */
export interface ProductImportTable {
  readonly import_id: BigIntColumn
  readonly store_id: string
  readonly format: FeedFormat
  /** The feed URL or `upload:<id>`. */
  readonly source: string
  state: Generated<ImportState>
  staged_through: Generated<number>
  rows_total: number | null
  rows_valid: number | null
  rows_invalid: number | null
  skus: number | null
  chunks: number | null
  rows_done: number | null
  rows_failed: number | null
  created_at: Generated<Date>
  updated_at: Generated<Date>
  finished_at: Date | null
}

/** `shop.product_import_rows`: valid feed rows, staged by line. */
export interface ProductImportRowTable {
  readonly import_id: BigIntColumn
  readonly line_no: number
  readonly sku: string
  readonly title: string
  readonly description: string
  readonly price: ColumnType<string, string, string>
  readonly currency: string
  readonly stock: number | null
  readonly attributes: ColumnType<Record<string, unknown>, string, string>
}

/** `shop.product_import_errors`: every rejected feed line and why (code: shop/0008). */
export interface ProductImportErrorTable {
  readonly import_id: BigIntColumn
  readonly line_no: number
  readonly sku: string | null
  readonly code: ColumnType<RowErrorCode, RowErrorCode | undefined, RowErrorCode>
  readonly reason: string
}

/** `shop.product_import_chunks`: one row per chunk job. */
export interface ProductImportChunkTable {
  readonly import_id: BigIntColumn
  readonly chunk_no: number
  readonly first_line: number
  readonly last_line: number
  readonly rows: number
  job_id: BigIntColumn | null
  state: Generated<ChunkState>
  upserted: number | null
  error: ColumnType<{ code: string; message: string } | null, string | null, string | null>
  finished_at: Date | null
}

/** The import's tables, to widen the shop view: `deps.shop.withTables<ImportTables>()`. */
export type ImportTables = {
  'shop.feed_uploads': FeedUploadTable
  'shop.feed_upload_parts': FeedUploadPartTable
  'shop.product_imports': ProductImportTable
  'shop.product_import_rows': ProductImportRowTable
  'shop.product_import_errors': ProductImportErrorTable
  'shop.product_import_chunks': ProductImportChunkTable
}

/** The shop's tables and the import's, as one schema (a mapped type, so withTables accepts it). */
export type ImportDatabase = { [K in keyof ShopDatabase]: ShopDatabase[K] } & ImportTables
