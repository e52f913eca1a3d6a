import type { Db } from '@backroom/queue-core'

/** Per table: a digest of one store's rows. */
export type StoreFingerprint = Readonly<Record<string, string>>

/**
 * Digests one store's rows in every table of the queue's (`public`) and the
 * shop's (`shop`) schemas: rows whose `store_id` is the store, and rows of
 * tables without one that hang off the store's uploads (`upload_id`) or
 * imports (`import_id`). Equal fingerprints mean no row of the store was
 * inserted, updated or deleted, whatever other stores did meanwhile.
 *
 * @example
 * const before = await storeFingerprint(t.db, 'store-b')
 * // … store A attacks …
 * expect(await storeFingerprint(t.db, 'store-b')).toEqual(before)
 */
export async function storeFingerprint(db: Db, storeId: string): Promise<StoreFingerprint> {
  const { rows: tables } = await db.pool.query<{ schema: string; name: string; columns: string[] }>(
    `select n.nspname as schema, c.relname as name, array_agg(a.attname::text order by a.attnum) as columns
     from pg_class c
     join pg_namespace n on n.oid = c.relnamespace
     join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
     where n.nspname in ('public', 'shop') and c.relkind in ('r', 'p') and not c.relispartition
     group by 1, 2 order by 1, 2`,
  )
  const out: Record<string, string> = {}
  for (const { schema, name, columns } of tables) {
    // Names come from the catalog, not from input; quoted all the same.
    const table = `"${schema}"."${name.replaceAll('"', '""')}"`
    let where: string | null = null
    if (columns.includes('store_id')) where = 't.store_id = $1'
    else if (columns.includes('upload_id') && schema === 'shop') where = 't.upload_id in (select upload_id from shop.feed_uploads where store_id = $1)'
    else if (columns.includes('import_id') && schema === 'shop') where = 't.import_id in (select import_id from shop.product_imports where store_id = $1)'
    if (where === null) continue
    const { rows } = await db.pool.query<{ digest: string }>(
      `select count(*) || ':' || coalesce(md5(string_agg(t::text, '|' order by t::text)), '') as digest from ${table} t where ${where}`,
      [storeId],
    )
    out[`${schema}.${name}`] = rows[0]!.digest
  }
  return out
}
