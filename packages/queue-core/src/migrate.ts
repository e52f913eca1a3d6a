import { createHash } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import * as migrations from './db/migrations.ts'

/** infra/migrations, found from this file in src/ or dist/ alike. */
export const DEFAULT_MIGRATIONS_DIR = fileURLToPath(new URL('../../../infra/migrations', import.meta.url))

/** A migration file on disk. */
export interface MigrationFile {
  readonly id: number
  readonly name: string
  readonly checksum: string
  readonly sql: string
  readonly transactional: boolean
}

/** An applied migration's file changed after it ran: the schema no longer matches the code. */
export class MigrationChecksumError extends Error {
  readonly code = 'migration_checksum_mismatch' as const
  readonly migration: string
  constructor(migration: string) {
    super(`applied migration ${migration} was changed on disk; add a new migration instead`)
    this.name = 'MigrationChecksumError'
    this.migration = migration
  }
}

/** Reads `NNNN_name.sql` files from a folder, in order. */
export async function readMigrations(dir: string = DEFAULT_MIGRATIONS_DIR): Promise<MigrationFile[]> {
  const names = (await readdir(dir)).filter((n) => /^\d{4}_[a-z0-9_]+\.sql$/.test(n)).sort()
  const files: MigrationFile[] = []
  for (const file of names) {
    const sql = await readFile(path.join(dir, file), 'utf8')
    files.push({
      id: Number(file.slice(0, 4)),
      name: file.replace(/\.sql$/, ''),
      checksum: createHash('sha256').update(sql).digest('hex'),
      sql,
      transactional: !/^--\s*migrate:\s*no-transaction\s*$/m.test(sql),
    })
  }
  const ids = new Set(files.map((f) => f.id))
  if (ids.size !== files.length) throw new Error('two migration files share a number')
  return files
}

/** Options of {@link migrate}. */
export interface MigrateOptions {
  readonly connectionString: string
  /** Folder of `NNNN_name.sql` files; default the queue's infra/migrations. */
  readonly dir?: string
  /**
   * Table that records what was applied (default `schema_migrations`). A
   * separate set of migrations, such as the shop's domain tables, keeps its
   * own ledger so its numbering never collides with the queue's.
   */
  readonly ledger?: string
}

/**
 * Applies pending migrations in order under a session advisory lock, so two
 * processes starting at once apply each file exactly once. Refuses to run
 * when an applied file's checksum changed. Returns the names applied.
 *
 * Uses its own connection (not a pooled one): the advisory lock is
 * session-scoped, which transaction-mode poolers do not keep; point
 * `connectionString` at the database directly.
 */
export async function migrate(options: MigrateOptions): Promise<string[]> {
  const ledger = migrations.checkLedger(options.ledger ?? migrations.DEFAULT_LEDGER)
  const files = await readMigrations(options.dir)
  const client = new pg.Client({ connectionString: options.connectionString, application_name: 'backroom-migrate' })
  await client.connect()
  try {
    await migrations.lockMigrations(client)
    try {
      await migrations.ensureMigrationsTable(client, ledger)
      const applied = new Map((await migrations.listApplied(client, ledger)).map((m) => [m.id, m]))
      const done: string[] = []
      for (const file of files) {
        const previous = applied.get(file.id)
        if (previous) {
          if (previous.checksum !== file.checksum) throw new MigrationChecksumError(file.name)
          continue
        }
        await migrations.applyMigration(client, file, ledger)
        done.push(file.name)
      }
      return done
    } finally {
      await migrations.unlockMigrations(client)
    }
  } finally {
    await client.end()
  }
}
