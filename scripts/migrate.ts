/**
 * `pnpm migrate`: applies pending infra/migrations/*.sql (the queue's), then
 * infra/migrations/shop/*.sql (the domain tables'), to DATABASE_URL and
 * prints the names applied. Safe to run at any time, from several places at
 * once (advisory-locked). The services also migrate at start-up; this is for
 * release steps and for looking before starting.
 */
import { migrateShop } from '@backroom/handlers'
import { migrate } from '@backroom/queue-core'
import { describeDatabaseUrl, redactDatabaseUrl } from './lib/describe-database-url.ts'

const url = process.env.DATABASE_URL?.trim()
if (!url) {
  console.error('DATABASE_URL is not set: point it at the database to migrate (pnpm start migrates its embedded database by itself)')
  process.exit(1)
}

try {
  const applied = [...(await migrate({ connectionString: url })), ...(await migrateShop(url))]
  if (applied.length === 0) console.log(`${describeDatabaseUrl(url)} is up to date`)
  for (const name of applied) console.log(`applied ${name}`)
} catch (err) {
  console.error(`migration failed: ${redactDatabaseUrl(err instanceof Error ? err.message : String(err), url)}`)
  process.exit(1)
}
