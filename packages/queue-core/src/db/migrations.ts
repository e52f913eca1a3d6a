import type pg from 'pg'

/** Key of the session advisory lock that serialises migrators (any fixed bigint). */
const MIGRATION_LOCK_KEY = 7_426_031_118

/** A migration already recorded in a ledger (`schema_migrations` for the queue). */
export interface AppliedMigration {
  readonly id: number
  readonly name: string
  readonly checksum: string
}

/** Waits for the migration lock; held for the session until {@link unlockMigrations}. */
export async function lockMigrations(client: pg.ClientBase): Promise<void> {
  await client.query('select pg_advisory_lock($1)', [MIGRATION_LOCK_KEY])
}

/** Releases the migration lock. */
export async function unlockMigrations(client: pg.ClientBase): Promise<void> {
  await client.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY])
}

/** The queue's ledger; other migration sets (the shop's domain tables) keep their own. */
export const DEFAULT_LEDGER = 'schema_migrations'

/**
 * A ledger name is spliced into SQL as an identifier (it cannot be a
 * parameter), so only plain lowercase names pass.
 */
export function checkLedger(ledger: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(ledger)) throw new Error(`migration ledger must be a lowercase table name, got ${JSON.stringify(ledger)}`)
  return ledger
}

/** Creates the bookkeeping table on first use. */
export async function ensureMigrationsTable(client: pg.ClientBase, ledger: string = DEFAULT_LEDGER): Promise<void> {
  await client.query(`
    create table if not exists ${checkLedger(ledger)} (
      id         integer     primary key,
      name       text        not null,
      checksum   text        not null,
      applied_at timestamptz not null default now()
    )`)
}

/** Every applied migration, in order. */
export async function listApplied(client: pg.ClientBase, ledger: string = DEFAULT_LEDGER): Promise<AppliedMigration[]> {
  const result = await client.query<AppliedMigration>(`select id, name, checksum from ${checkLedger(ledger)} order by id`)
  return result.rows
}

/**
 * Runs one migration file's SQL and records it. In a transaction unless the
 * file says `-- migrate: no-transaction` (CREATE INDEX CONCURRENTLY).
 */
export async function applyMigration(
  client: pg.ClientBase,
  m: { readonly id: number; readonly name: string; readonly checksum: string; readonly sql: string; readonly transactional: boolean },
  ledger: string = DEFAULT_LEDGER,
): Promise<void> {
  const record = () =>
    client.query(`insert into ${checkLedger(ledger)} (id, name, checksum) values ($1, $2, $3)`, [m.id, m.name, m.checksum])
  if (!m.transactional) {
    await client.query(m.sql)
    await record()
    return
  }
  await client.query('begin')
  try {
    await client.query(m.sql)
    await record()
    await client.query('commit')
  } catch (err) {
    await client.query('rollback')
    throw err
  }
}
