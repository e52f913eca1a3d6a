import type { Db } from '@backroom/queue-core'
import { Kysely, PostgresDialect } from 'kysely'
import type { ShopDatabase } from './shop-database.ts'

/**
 * A Kysely view of the shop's tables on the queue's pool. It is not closed
 * separately: closing `db` ends both.
 */
export function shopView(db: Db): Kysely<ShopDatabase> {
  return new Kysely<ShopDatabase>({ dialect: new PostgresDialect({ pool: db.pool }) })
}
