import { sql, type ColumnType, type Generated, type Kysely } from 'kysely'
import type { ShopDatabase } from '../lib/shop-database.ts'
import type { InventoryLevel } from './inventory-api.ts'

/** What a sync covers. */
export const SYNC_KINDS = ['full', 'skus'] as const
export type SyncKind = (typeof SYNC_KINDS)[number]

/** `shop.inventory_syncs` (infra/migrations/shop/0004): each store's last inventory sync. */
export interface InventorySyncTable {
  readonly store_id: string
  last_started_at: Date
  last_started_job_id: string
  last_finished_at: Date | null
  last_finished_job_id: string | null
  last_kind: SyncKind | null
  last_full_finished_at: Date | null
  pages: Generated<number>
  levels_seen: Generated<number>
  levels_applied: Generated<number>
  levels_skipped: Generated<number>
  unknown_skus: Generated<number>
}

/**
 * The tables this folder uses: its own, and shop.products with the
 * `stock_updated_at` column 0004 adds. A type, not an interface: withTables()
 * wants an index-signature-compatible record.
 */
export type InventoryTables = {
  'shop.inventory_syncs': InventorySyncTable
  'shop.products': { stock_updated_at: ColumnType<Date | null, string | null | undefined, string | null> }
}

/** The shop view this folder works on. */
export type InventoryDb = Kysely<ShopDatabase & InventoryTables>

/** What applying one page changed. */
export interface AppliedLevels {
  /** Products whose stock was set. */
  readonly applied: number
  /** Levels not newer than the one already applied (stale or replayed). */
  readonly skipped: number
  /** SKUs the store has no product for, sorted. */
  readonly unknown: ReadonlyArray<string>
}

/**
 * Sets the stock of the store's existing products to the given levels, each
 * only if its `updatedAt` is newer than the level already applied
 * (`stock_updated_at`), so a late or replayed page never puts an older level
 * back. Absolute levels make a re-run harmless; equal timestamps are skipped
 * so a repeated full sync rewrites no rows. Negative levels (oversold) are
 * stored as 0, which shop.products requires.
 *
 * Raw SQL because it is one statement over an unnest() of the page: the guard
 * sits in the UPDATE's WHERE, so concurrent syncs of a store serialise on the
 * row lock and PostgreSQL re-checks the guard against the newest row.
 * Index: shop.products primary key (store_id, sku).
 */
export async function applyLevels(db: InventoryDb, storeId: string, levels: ReadonlyArray<InventoryLevel>): Promise<AppliedLevels> {
  const latest = latestPerSku(levels)
  if (latest.length === 0) return { applied: 0, skipped: 0, unknown: [] }
  const result = await sql<{ applied: number; unknown: string[] }>`
    with incoming as (
      select l.sku, l.available, l.updated_at
      from unnest(${latest.map((l) => l.sku)}::text[], ${latest.map((l) => l.available)}::int[],
                  ${latest.map((l) => l.updatedAt)}::timestamptz[]) as l(sku, available, updated_at)
    ),
    applied as (
      update shop.products p
      set stock = greatest(i.available, 0), stock_updated_at = i.updated_at, updated_at = now()
      from incoming i
      where p.store_id = ${storeId} and p.sku = i.sku
        and (p.stock_updated_at is null or p.stock_updated_at < i.updated_at)
      returning p.sku
    )
    select (select count(*)::int from applied) as applied,
           coalesce((select array_agg(i.sku order by i.sku) from incoming i
                     where not exists (select 1 from shop.products p where p.store_id = ${storeId} and p.sku = i.sku)),
                    '{}') as unknown
  `.execute(db)
  const row = result.rows[0]!
  return { applied: row.applied, skipped: latest.length - row.applied - row.unknown.length, unknown: row.unknown }
}

/** One level per SKU (the newest; the later one on a tie): an UPDATE … FROM applies only one of duplicates, at random. */
function latestPerSku(levels: ReadonlyArray<InventoryLevel>): InventoryLevel[] {
  const bySku = new Map<string, InventoryLevel>()
  for (const level of levels) {
    const seen = bySku.get(level.sku)
    if (!seen || level.updatedAtMs >= seen.updatedAtMs) bySku.set(level.sku, level)
  }
  return [...bySku.values()]
}

/** Records that a sync of the store started (the row is created on the store's first sync). */
export async function recordSyncStarted(db: InventoryDb, args: { storeId: string; jobId: string }): Promise<void> {
  await db
    .insertInto('shop.inventory_syncs')
    .values({ store_id: args.storeId, last_started_at: sql<Date>`now()`, last_started_job_id: args.jobId })
    .onConflict((oc) =>
      oc.column('store_id').doUpdateSet({ last_started_at: sql<Date>`now()`, last_started_job_id: args.jobId }),
    )
    .execute()
}

/** The counts of a finished sync. */
export interface SyncTally {
  readonly pages: number
  readonly levels: number
  readonly applied: number
  readonly skipped: number
  readonly unknownSkus: number
}

/** Records a finished sync and its counts. */
export async function recordSyncFinished(db: InventoryDb, args: { storeId: string; jobId: string; kind: SyncKind; tally: SyncTally }): Promise<void> {
  const { tally } = args
  await db
    .updateTable('shop.inventory_syncs')
    .set({
      last_finished_at: sql<Date>`now()`,
      last_finished_job_id: args.jobId,
      last_kind: args.kind,
      last_full_finished_at: args.kind === 'full' ? sql<Date>`now()` : sql<Date | null>`last_full_finished_at`,
      pages: tally.pages,
      levels_seen: tally.levels,
      levels_applied: tally.applied,
      levels_skipped: tally.skipped,
      unknown_skus: tally.unknownSkus,
    })
    .where('store_id', '=', args.storeId)
    .execute()
}
