import { sql, type ColumnType, type Generated, type Kysely } from 'kysely'

/** Where an export stands (shop.marketplace_exports.state). */
export const EXPORT_STATES = ['building', 'uploaded', 'empty'] as const
export type ExportState = (typeof EXPORT_STATES)[number]

/** `shop.marketplace_exports` (infra/migrations/shop/0006): one row per export job. */
export interface MarketplaceExportTable {
  /** The job id (bigint; pg returns it as a decimal string, like job ids everywhere). */
  readonly id: string
  readonly store_id: string
  readonly marketplace: string
  readonly format: 'csv' | 'xml'
  state: Generated<ExportState>
  product_count: number | null
  /** bigint: pg returns it as a string. */
  bytes: ColumnType<string | null, number | null, number | null>
  sha256: string | null
  remote_feed_id: string | null
  created_at: Generated<Date>
  uploaded_at: Date | null
}

/**
 * The tables this folder adds to the shop view (`deps.shop.withTables<ExportTables>()`);
 * a type alias, not an interface: withTables needs its index signature.
 */
export type ExportTables = {
  'shop.marketplace_exports': MarketplaceExportTable
}

/** An export as the handler sees it. */
export interface MarketplaceExport {
  readonly id: string
  readonly storeId: string
  readonly marketplace: string
  readonly format: 'csv' | 'xml'
  readonly state: ExportState
  readonly productCount: number | null
  readonly bytes: number | null
  readonly sha256: string | null
  readonly remoteFeedId: string | null
  readonly uploadedAt: Date | null
}

/**
 * The export row of a job, created on its first run. A later run of the same
 * job (retry, crash, rescued lease) gets the existing row back, state and all.
 */
export async function openExport(
  db: Kysely<ExportTables>,
  args: { readonly id: string; readonly storeId: string; readonly marketplace: string; readonly format: 'csv' | 'xml' },
): Promise<MarketplaceExport> {
  await db
    .insertInto('shop.marketplace_exports')
    .values({ id: args.id, store_id: args.storeId, marketplace: args.marketplace, format: args.format, product_count: null, bytes: null, sha256: null, remote_feed_id: null, uploaded_at: null })
    .onConflict((oc) => oc.column('id').doNothing())
    .execute()
  const row = await db.selectFrom('shop.marketplace_exports').selectAll().where('id', '=', args.id).executeTakeFirstOrThrow()
  return {
    id: row.id,
    storeId: row.store_id,
    marketplace: row.marketplace,
    format: row.format,
    state: row.state,
    productCount: row.product_count,
    bytes: row.bytes === null ? null : Number(row.bytes),
    sha256: row.sha256,
    remoteFeedId: row.remote_feed_id,
    uploadedAt: row.uploaded_at,
  }
}

/**
 * Records what the latest build of a still-open export produced. An export
 * already finished is left as it was (a stale run must not rewrite it).
 */
export async function recordBuilt(
  db: Kysely<ExportTables>,
  id: string,
  built: { readonly productCount: number; readonly bytes: number; readonly sha256: string },
): Promise<void> {
  await db
    .updateTable('shop.marketplace_exports')
    .set({ product_count: built.productCount, bytes: built.bytes, sha256: built.sha256 })
    .where('id', '=', id)
    .where('state', '=', 'building')
    .execute()
}

/** Closes an open export: uploaded (with the marketplace's feed id) or empty. */
export async function finishExport(
  db: Kysely<ExportTables>,
  id: string,
  outcome: { readonly state: 'uploaded'; readonly remoteFeedId: string } | { readonly state: 'empty' },
): Promise<void> {
  await db
    .updateTable('shop.marketplace_exports')
    .set(
      outcome.state === 'uploaded'
        ? { state: 'uploaded', remote_feed_id: outcome.remoteFeedId, uploaded_at: sql<Date>`now()` }
        : { state: 'empty' },
    )
    .where('id', '=', id)
    .where('state', '=', 'building')
    .execute()
}
