import { fileURLToPath } from 'node:url'
import { migrate } from '@backroom/queue-core'

/** infra/migrations/shop: the domain tables' migrations, found from src/ or dist/ alike. */
export const SHOP_MIGRATIONS_DIR = fileURLToPath(new URL('../../../../infra/migrations/shop', import.meta.url))

/** The domain set's own ledger, apart from the queue's `schema_migrations`. */
export const SHOP_LEDGER = 'shop_migrations'

/**
 * Applies pending domain migrations (shop schema). Advisory-locked like the
 * queue's, so several workers starting together are safe. Returns the names applied.
 */
export async function migrateShop(connectionString: string): Promise<string[]> {
  return migrate({ connectionString, dir: SHOP_MIGRATIONS_DIR, ledger: SHOP_LEDGER })
}
