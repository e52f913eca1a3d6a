import type { ColumnType, Generated } from 'kysely'

/** `shop.stores` (infra/migrations/shop/0001). */
export interface ShopStoreTable {
  readonly store_id: string
  name: Generated<string>
  default_locale: Generated<string>
  locales: Generated<string[]>
  created_at: Generated<Date>
  updated_at: Generated<Date>
}

/** `shop.products` (infra/migrations/shop/0001): one row per (store, SKU). */
export interface ProductTable {
  readonly store_id: string
  readonly sku: string
  title: string
  description: Generated<string>
  /** numeric(14,2): pg returns it as a string, so it stays exact. */
  price: ColumnType<string, string | number, string | number>
  currency: string
  stock: number | null
  attributes: ColumnType<Record<string, unknown>, string | Record<string, unknown>, string | Record<string, unknown>>
  created_at: Generated<Date>
  updated_at: Generated<Date>
}

/**
 * The domain tables every handler may read. A handler folder with tables of
 * its own declares them beside itself and widens its view with
 * `deps.shop.withTables<ItsTables>()`, so no handler edits this file.
 */
export interface ShopDatabase {
  'shop.stores': ShopStoreTable
  'shop.products': ProductTable
}
