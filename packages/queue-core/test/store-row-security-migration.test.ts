import { readFile } from 'node:fs/promises'
import path from 'node:path'
import pg from 'pg'
import { afterAll, describe, expect, inject, it } from 'vitest'
import { connect } from '../src/db/connect.ts'
import { STORE_ROLE, storeRowSecurity, withStoreScope } from '../src/db/store-scope.ts'
import { enqueue } from '../src/enqueue.ts'
import { DEFAULT_MIGRATIONS_DIR, migrate } from '../src/migrate.ts'
import { waitFor } from '../src/testing/fixtures.ts'
import { adminQuery, dropDatabase, uniqueDatabaseName, withDatabase } from '../src/testing/test-database.ts'

/**
 * Migration 0013 under the conditions a shared cluster brings: roles belong
 * to the whole cluster while migrations run per database, several at once,
 * and a managed server's migrating user may not create roles. Where a test
 * needs the role not to exist yet, it runs the file's text for a role of its
 * own name (replacing `backroom_store`), since the real role exists
 * cluster-wide once any test database was migrated.
 */

const MIGRATION = path.join(DEFAULT_MIGRATIONS_DIR, '0013_store_row_security.sql')
const suffix = `${process.pid}_${Date.now().toString(36)}`
const databases: string[] = []
const roles: string[] = []

afterAll(async () => {
  const { serverUrl } = inject('backroomTestDb')
  for (const name of databases) await dropDatabase(serverUrl, name)
  for (const role of roles) await adminQuery(serverUrl, `drop role if exists ${role}`)
})

/** Migration 0013's text for another role name. */
async function migrationFor(role: string): Promise<string> {
  return (await readFile(MIGRATION, 'utf8')).replaceAll(STORE_ROLE, role)
}

/** A database cloned from the migrated template (owned by the server's user), with a client on it. */
async function templateClone(): Promise<pg.Client> {
  const { serverUrl, template } = inject('backroomTestDb')
  const name = uniqueDatabaseName('backroom_rls')
  await adminQuery(serverUrl, `create database "${name}" template "${template}"`)
  databases.push(name)
  const client = new pg.Client({ connectionString: withDatabase(serverUrl, name) })
  await client.connect()
  return client
}

/** `url` with another login. */
function asLogin(url: string, login: string): string {
  const u = new URL(url)
  u.username = login
  u.password = login
  return u.toString()
}

/** A login role that may not create roles (as on a managed server), dropped after the file. */
async function plainLogin(name: string): Promise<string> {
  const { serverUrl } = inject('backroomTestDb')
  await adminQuery(serverUrl, `create role ${name} login nocreaterole nosuperuser password '${name}'`)
  roles.push(name)
  return name
}

describe('migration 0013', () => {
  it('creates the role once when two databases migrate at the same moment: the second waits for the first, then goes on', async () => {
    const role = `backroom_t_role_${suffix}`
    roles.push(role)
    const text = await migrationFor(role)
    const first = await templateClone()
    const second = await templateClone()
    try {
      await first.query('begin')
      await first.query(text)
      // The first has created the role but not committed: the second's insert of the same name waits on it.
      await second.query('begin')
      const secondPid = (await second.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid
      const secondRun = second.query(text)
      // Awaited below; until then a failure must not surface as an unhandled rejection.
      secondRun.catch(() => {})
      const { serverUrl } = inject('backroomTestDb')
      const watcher = new pg.Client({ connectionString: serverUrl })
      await watcher.connect()
      try {
        await waitFor(
          async () => (await watcher.query(`select 1 from pg_stat_activity where pid = $1 and wait_event_type = 'Lock'`, [secondPid])).rowCount === 1,
          { timeoutMs: 10_000, what: 'the second migration to wait on the first one\'s role' },
        )
      } finally {
        await watcher.end()
      }
      await first.query('commit')
      await secondRun
      await second.query('commit')
      for (const client of [first, second]) {
        const { rows } = await client.query(`select has_table_privilege($1, 'jobs', 'select') as granted`, [role])
        expect(rows[0].granted).toBe(true)
      }
    } finally {
      await first.end()
      await second.end()
    }
  })

  it('succeeds with a notice, and creates nothing, where the migrating user may not create roles', async () => {
    const login = await plainLogin(`backroom_t_plain_${suffix}`)
    const role = `backroom_t_never_${suffix}`
    const client = await templateClone()
    await client.end()
    const { serverUrl } = inject('backroomTestDb')
    const asPlain = new pg.Client({ connectionString: asLogin(withDatabase(serverUrl, databases.at(-1)!), login) })
    const notices: string[] = []
    asPlain.on('notice', (notice) => notices.push(notice.message ?? ''))
    await asPlain.connect()
    try {
      await asPlain.query('begin')
      await asPlain.query(await migrationFor(role))
      await asPlain.query('commit')
      expect(notices.join('\n')).toContain(`may not create role ${role}`)
      const { rows } = await asPlain.query('select count(*)::int as n from pg_roles where rolname = $1', [role])
      expect(rows[0].n).toBe(0)
    } finally {
      await asPlain.end()
    }
  })

  describe('migrated by a login that owns its database but may not grant the role (a managed server)', () => {
    it('applies every migration; row security is off until the login is granted the role, then on', async () => {
      const { serverUrl } = inject('backroomTestDb')
      const login = await plainLogin(`backroom_t_owner_${suffix}`)
      const name = uniqueDatabaseName('backroom_rls_owned')
      await adminQuery(serverUrl, `create database "${name}" owner ${login}`)
      databases.push(name)
      const url = asLogin(withDatabase(serverUrl, name), login)
      const applied = await migrate({ connectionString: url })
      expect(applied).toContain('0013_store_row_security')
      const db = connect({ connectionString: url, max: 2 })
      try {
        expect(await storeRowSecurity(db.kysely)).toMatchObject({ inEffect: false, gap: 'cannot_switch' })
        // What the operator does then, as an administrator; this login owns the tables, so the policies are in place already.
        await adminQuery(serverUrl, `grant ${STORE_ROLE} to ${login}`)
        expect(await storeRowSecurity(db.kysely)).toMatchObject({ inEffect: true })
        await enqueue(db.kysely, { type: 'test.noop', storeId: 'store-a' })
        await enqueue(db.kysely, { type: 'test.noop', storeId: 'store-b' })
        const seen = await withStoreScope(db.kysely, 'store-a', (trx) => trx.selectFrom('jobs').select('store_id').execute())
        expect(seen.map((r) => r.store_id)).toEqual(['store-a'])
      } finally {
        await db.close()
        await adminQuery(serverUrl, `revoke ${STORE_ROLE} from ${login}`)
      }
    })
  })
})
