import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { afterAll, describe, expect, inject, it } from 'vitest'
import { DEFAULT_MIGRATIONS_DIR, migrate, MigrationChecksumError, readMigrations } from '../src/migrate.ts'
import { waitFor } from '../src/testing/fixtures.ts'
import { adminQuery, dropDatabase, uniqueDatabaseName, withDatabase } from '../src/testing/test-database.ts'
import { killAllChildren, spawnTsChild } from './fixtures/child-process.ts'

/**
 * The session advisory lock migrate() serialises on: MIGRATION_LOCK_KEY in
 * src/db/migrations.ts (not exported). The test holds it to make sure two
 * migrators really are inside migrate() at the same time.
 */
const MIGRATION_LOCK_KEY = 7_426_031_118

const databases: string[] = []
const tempDirs: string[] = []
afterAll(async () => {
  await killAllChildren()
  const { serverUrl } = inject('backroomTestDb')
  for (const name of databases) await dropDatabase(serverUrl, name)
  for (const dir of tempDirs) await rm(dir, { recursive: true, force: true })
})

/** A new, empty database (no template, no schema) and a client on it. */
async function emptyDatabase(): Promise<{ url: string; client: pg.Client }> {
  const { serverUrl } = inject('backroomTestDb')
  const name = uniqueDatabaseName('backroom_mig')
  await adminQuery(serverUrl, `create database "${name}"`)
  databases.push(name)
  const url = withDatabase(serverUrl, name)
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  return { url, client }
}

async function recorded(client: pg.Client) {
  return (await client.query<{ id: number; name: string; checksum: string }>('select id, name, checksum from schema_migrations order by id')).rows
}

async function expectSchemaOnce(client: pg.Client) {
  const files = await readMigrations()
  expect(await recorded(client)).toEqual(files.map((f) => ({ id: f.id, name: f.name, checksum: f.checksum })))
  // 0001 seeds the one global clock row: a second run would have failed or doubled it.
  expect((await client.query('select count(*)::int as n from queue_clock')).rows[0].n).toBe(1)
  return files.map((f) => f.name)
}

describe('migrate on a fresh database', () => {
  it('applies every file exactly once when two migrate() calls start together', async () => {
    const { url, client } = await emptyDatabase()
    try {
      const results = await Promise.all([migrate({ connectionString: url }), migrate({ connectionString: url })])
      const names = await expectSchemaOnce(client)
      expect(names.length).toBeGreaterThan(0)
      // One call applied everything, the other found it done.
      expect([...results].sort((a, b) => a.length - b.length)).toEqual([[], names])
    } finally {
      await client.end()
    }
  })

  it('applies every file exactly once when two processes migrate at once', { timeout: 60_000 }, async () => {
    const { url, client } = await emptyDatabase()
    try {
      // Hold the migration lock so both processes are waiting inside migrate() before either may start.
      await client.query('select pg_advisory_lock($1)', [MIGRATION_LOCK_KEY])
      const children = ['m1', 'm2'].map((label) => spawnTsChild('test/fixtures/migrate-child.ts', { label, env: { DATABASE_URL: url } }))
      await waitFor(
        async () =>
          (
            await client.query(`select count(*)::int as n from pg_locks l join pg_database d on d.oid = l.database
                                where l.locktype = 'advisory' and not l.granted and d.datname = current_database()`)
          ).rows[0].n === 2,
        { timeoutMs: 30_000, what: 'both migrators to wait on the migration lock' },
      )
      await client.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY])
      const reports = await Promise.all(children.map((c) => c.message('migrated')))
      const exits = await Promise.all(children.map((c) => c.exited))
      expect(exits, children.map((c) => c.stderr()).join('\n')).toEqual([
        { code: 0, signal: null },
        { code: 0, signal: null },
      ])
      const names = await expectSchemaOnce(client)
      expect(reports.map((r) => r.applied as string[]).sort((a, b) => a.length - b.length)).toEqual([[], names])
    } finally {
      await client.end()
    }
  })
})

describe('migrate after an applied file changed', () => {
  it('throws MigrationChecksumError and applies nothing, not even later files', async () => {
    const { url, client } = await emptyDatabase()
    try {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'backroom-migrations-'))
      tempDirs.push(dir)
      const files = await readMigrations()
      await cp(DEFAULT_MIGRATIONS_DIR, dir, { recursive: true })
      expect(await migrate({ connectionString: url, dir })).toEqual(files.map((f) => f.name))
      const before = await recorded(client)

      const first = files[0]!
      const firstPath = path.join(dir, `${first.name}.sql`)
      await writeFile(firstPath, `${await readFile(firstPath, 'utf8')}\n-- edited after it was applied\n`)
      await writeFile(path.join(dir, '9999_later_change.sql'), 'create table later_change (id int);\n')

      const error = await migrate({ connectionString: url, dir }).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(MigrationChecksumError)
      expect(error).toMatchObject({ code: 'migration_checksum_mismatch', migration: first.name })
      expect(await recorded(client)).toEqual(before)
      expect((await client.query(`select to_regclass('later_change') as t`)).rows[0].t).toBeNull()

      // The refusal released the migration lock: the unchanged files still migrate (nothing to do).
      expect(await migrate({ connectionString: url })).toEqual([])
    } finally {
      await client.end()
    }
  })
})

describe('migrate with a second ledger', () => {
  it('keeps another set of migrations apart from the queue: same numbers, own table', async () => {
    const { url, client } = await emptyDatabase()
    const dir = await mkdtemp(path.join(os.tmpdir(), 'backroom-ledger-'))
    tempDirs.push(dir)
    try {
      await writeFile(path.join(dir, '0001_domain_table.sql'), 'create table domain_things (id int primary key);\n')
      await migrate({ connectionString: url })
      expect(await migrate({ connectionString: url, dir, ledger: 'domain_migrations' })).toEqual(['0001_domain_table'])
      expect(await migrate({ connectionString: url, dir, ledger: 'domain_migrations' })).toEqual([])
      await expectSchemaOnce(client)
      const domain = await client.query('select id, name from domain_migrations')
      expect(domain.rows).toEqual([{ id: 1, name: '0001_domain_table' }])
      await expect(migrate({ connectionString: url, dir, ledger: 'bad; drop table jobs' })).rejects.toThrow(/lowercase table name/)
    } finally {
      await client.end()
    }
  })
})
