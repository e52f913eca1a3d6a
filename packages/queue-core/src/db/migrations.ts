import type pg from 'pg'

/** Key of the session advisory lock that serialises migrators (any fixed bigint). */
const MIGRATION_LOCK_KEY = 7_426_031_118

/** A migration already recorded in `schema_migrations`. */
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

/** Creates the bookkeeping table on first use. */
export async function ensureMigrationsTable(client: pg.ClientBase): Promise<void> {
  await client.query(`
    create table if not exists schema_migrations (
      id         integer     primary key,
      name       text        not null,
      checksum   text        not null,
      applied_at timestamptz not null default now()
    )`)
}

/** Every applied migration, in order. */
export async function listApplied(client: pg.ClientBase): Promise<AppliedMigration[]> {
  const result = await client.query<AppliedMigration>('select id, name, checksum from schema_migrations order by id')
  return result.rows
}

/**
 * Runs one migration file's SQL and records it. In a transaction unless the
 * file says `-- migrate: no-transaction` (CREATE INDEX CONCURRENTLY).
 */
export async function applyMigration(
  client: pg.ClientBase,
  m: { readonly id: number; readonly name: string; readonly checksum: string; readonly sql: string; readonly transactional: boolean },
): Promise<void> {
  const record = () =>
    client.query('insert into schema_migrations (id, name, checksum) values ($1, $2, $3)', [m.id, m.name, m.checksum])
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
