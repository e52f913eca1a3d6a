import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cancelJob, getJob, retryJob } from '../admin.ts'
import { enqueue, enqueueMany } from '../enqueue.ts'
import { JobNotFoundError, ValidationError } from '../errors.ts'
import { listJobs } from '../list-jobs.ts'
import { queueHealth } from '../queue-health.ts'
import { configureJobType, setStoreLiveJobCap } from '../settings.ts'
import { pauseStore } from '../store-ops.ts'
import { insertJob } from '../testing/fixtures.ts'
import { adminQuery, withDatabase } from '../testing/test-database.ts'
import { useTestDatabase } from '../testing/use-test-database.ts'
import type { Job } from '../types.ts'
import { connect, type Db } from './connect.ts'
import type { Executor } from './database.ts'
import { POLICED_TABLES, STORE_ROLE, STORE_SETTING, storeRowSecurity, withStoreScope } from './store-scope.ts'

const t = useTestDatabase()

let pendingA: Job, pendingB: Job, runningB: Job, cancelledA: Job, cancelledB: Job

beforeAll(async () => {
  const db = t.db.kysely
  pendingA = await insertJob(db, { storeId: 'store-a' })
  pendingB = await insertJob(db, { storeId: 'store-b' })
  const runningA = await insertJob(db, { storeId: 'store-a' })
  runningB = await insertJob(db, { storeId: 'store-b' })
  await sql`update jobs set state = 'running', attempt = 1, started_at = now() where id in (${runningA.id}, ${runningB.id})`.execute(db)
  cancelledA = await cancelJob(db, (await insertJob(db, { storeId: 'store-a' })).id)
  cancelledB = await cancelJob(db, (await insertJob(db, { storeId: 'store-b' })).id)
  // A pause of a type neither store enqueues here, so their test jobs stay pending.
  await pauseStore(db, 'store-a', { type: 'other.type' })
  await pauseStore(db, 'store-b', { type: 'other.type' })
})

/** The distinct store ids an unfiltered read of `table` returns. */
async function storesIn(db: Executor, table: string): Promise<string[]> {
  const { rows } = await sql<{ store_id: string }>`select distinct store_id from ${sql.table(table)} order by store_id`.execute(db)
  return rows.map((r) => r.store_id)
}

/** The SQLSTATE a promise rejects with. */
async function sqlState(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise
  } catch (err) {
    return (err as { code?: string }).code
  }
  throw new Error('expected the statement to fail')
}

/** Rolls back whatever `fn` did inside the scope. */
async function inScopeRolledBack(storeId: string, fn: (trx: Executor) => Promise<void>): Promise<void> {
  const rollback = new Error('rollback')
  await expect(
    withStoreScope(t.db.kysely, storeId, async (trx) => {
      await fn(trx)
      throw rollback
    }),
  ).rejects.toBe(rollback)
}

describe('a statement with no store filter, inside the scope of store a', () => {
  it('runs as the store role', async () => {
    const who = await withStoreScope(t.db.kysely, 'store-a', async (trx) => {
      const { rows } = await sql<{ user: string; role: string; store: string }>`
        select current_user as user, current_setting('role') as role, current_setting(${STORE_SETTING}) as store`.execute(trx)
      return rows[0]
    })
    expect(who).toEqual({ user: STORE_ROLE, role: STORE_ROLE, store: 'store-a' })
  })

  it('reads only store a rows of every policed table (the owner sees both stores)', async () => {
    for (const table of POLICED_TABLES) expect(await storesIn(t.db.kysely, table), table).toEqual(['store-a', 'store-b'])
    await withStoreScope(t.db.kysely, 'store-a', async (trx) => {
      for (const table of POLICED_TABLES) expect(await storesIn(trx, table), table).toEqual(['store-a'])
      const all = await trx.selectFrom('jobs').selectAll().execute()
      expect(all.length).toBeGreaterThan(0)
      expect(all.every((j) => j.store_id === 'store-a')).toBe(true)
      const history = await trx.selectFrom('job_history').select(['id', 'store_id']).execute()
      expect(history).toEqual([{ id: cancelledA.id, store_id: 'store-a' }])
    })
  })

  it('cannot insert a row for store b (WITH CHECK), in any policed table it may write', async () => {
    await inScopeRolledBack('store-a', async (trx) => {
      expect(await sqlState(sql`insert into jobs (type, store_id, state) values ('test.noop', 'store-b', 'pending')`.execute(trx))).toBe('42501')
    })
    await inScopeRolledBack('store-a', async (trx) => {
      const history = sql`insert into job_history (id, type, queue, store_id, priority, state, attempt, payload, errors, run_at, created_at)
        values (999999, 'test.noop', 'default', 'store-b', 5, 'failed', 1, '{}', '[]', now(), now())`
      expect(await sqlState(history.execute(trx))).toBe('42501')
    })
    await inScopeRolledBack('store-a', async (trx) => {
      expect(await sqlState(sql`insert into stores (store_id, vclock) values ('store-new', 0)`.execute(trx))).toBe('42501')
    })
  })

  it('updates and deletes touch only store a rows', async () => {
    const before = await sql`select id, store_id, state, cancel_requested from jobs order by id`.execute(t.db.kysely)
    await inScopeRolledBack('store-a', async (trx) => {
      const updated = await sql<{ store_id: string }>`update jobs set cancel_requested = true returning store_id`.execute(trx)
      expect(new Set(updated.rows.map((r) => r.store_id))).toEqual(new Set(['store-a']))
      const b = await sql`update jobs set run_at = now() where store_id = 'store-b'`.execute(trx)
      expect(Number(b.numAffectedRows)).toBe(0)
      const gone = await sql<{ id: string }>`delete from job_history returning id`.execute(trx)
      expect(gone.rows.map((r) => r.id)).toEqual([cancelledA.id])
      expect(Number((await sql`delete from jobs where id = ${pendingB.id}`.execute(trx)).numAffectedRows)).toBe(0)
    })
    // Nothing of store b changed (and the rollback undid store a's).
    expect((await sql`select id, store_id, state, cancel_requested from jobs order by id`.execute(t.db.kysely)).rows).toEqual(before.rows)
  })

  it('may not move a row to another store, nor change what the operator owns', async () => {
    // store_id is not among the role's updatable columns; weight and caps are the operator's.
    for (const statement of [
      sql`update jobs set store_id = 'store-b'`,
      sql`update stores set weight = 100`,
      sql`update stores set max_live_jobs = null`,
      sql`update jobs set claim_priority = 1`,
      sql`insert into store_pauses (store_id) values ('store-a')`,
    ]) {
      await inScopeRolledBack('store-a', async (trx) => {
        expect(await sqlState(statement.execute(trx))).toBe('42501')
      })
    }
  })

  it('has no access to tables outside the store requests, nor to history partitions directly', async () => {
    for (const table of ['api_keys', 'api_key_secret', 'rate_limits', 'leader_lease', 'store_type_limits', 'job_history_default', 'schema_migrations']) {
      await inScopeRolledBack('store-a', async (trx) => {
        expect(await sqlState(sql`select count(*) from ${sql.table(table)}`.execute(trx)), table).toBe('42501')
      })
    }
  })
})

describe('the role without a store', () => {
  it('sees no row of any policed table (fail closed)', async () => {
    await t.db.kysely.transaction().execute(async (trx) => {
      await sql`select set_config('role', ${STORE_ROLE}, true)`.execute(trx)
      for (const table of POLICED_TABLES) expect(await storesIn(trx, table), table).toEqual([])
    })
  })

  it('sees none either once the session used the setting before (it then reads as an empty string)', async () => {
    const one = connect({ connectionString: t.url, max: 1 })
    try {
      await withStoreScope(one.kysely, 'store-a', async (trx) => storesIn(trx, 'jobs'))
      await one.kysely.transaction().execute(async (trx) => {
        await sql`select set_config('role', ${STORE_ROLE}, true)`.execute(trx)
        const { rows } = await sql<{ s: string | null }>`select current_setting(${STORE_SETTING}, true) as s`.execute(trx)
        expect(rows[0]!.s).toBe('')
        for (const table of POLICED_TABLES) expect(await storesIn(trx, table), table).toEqual([])
      })
    } finally {
      await one.close()
    }
  })
})

describe('a pooled connection after a scope', () => {
  it('is back to its login and no store, after a commit and after a rollback', async () => {
    const one = connect({ connectionString: t.url, max: 1 })
    try {
      const whoNow = async () =>
        (await sql<{ user: string; store: string | null }>`select current_user as user, current_setting(${STORE_SETTING}, true) as store`.execute(one.kysely)).rows[0]
      const login = (await whoNow())!.user
      expect(login).not.toBe(STORE_ROLE)
      await withStoreScope(one.kysely, 'store-a', async () => undefined)
      expect(await whoNow()).toEqual({ user: login, store: '' })
      await expect(withStoreScope(one.kysely, 'store-a', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom')
      expect(await whoNow()).toEqual({ user: login, store: '' })
      expect(await storesIn(one.kysely, 'jobs')).toEqual(['store-a', 'store-b'])
    } finally {
      await one.close()
    }
  })

  it('refuses a store id that is none', async () => {
    await expect(withStoreScope(t.db.kysely, '', async () => 1)).rejects.toBeInstanceOf(ValidationError)
  })
})

describe("queue-core's API functions, given the scope's transaction", () => {
  const asA = <T>(fn: (trx: Executor) => Promise<T>) => withStoreScope(t.db.kysely, 'store-a', fn)
  /** What a caller that forgot the store sees: the platform's scope. */
  const everyStore = { storeId: null }

  it('read only store a even when asked with no store scope', async () => {
    await expect(asA((trx) => getJob(trx, pendingB.id, everyStore))).rejects.toBeInstanceOf(JobNotFoundError)
    await expect(asA((trx) => getJob(trx, cancelledB.id, everyStore))).rejects.toBeInstanceOf(JobNotFoundError)
    expect((await asA((trx) => getJob(trx, pendingA.id, everyStore))).id).toBe(pendingA.id)
    const page = await asA((trx) => listJobs(trx, {}, everyStore))
    expect(page.jobs.length).toBeGreaterThan(0)
    expect(page.jobs.every((j) => j.storeId === 'store-a')).toBe(true)
    const health = await asA((trx) => queueHealth(trx, {}))
    expect(health.byStore.map((s) => s.storeId)).toEqual(['store-a'])
  })

  it('cannot cancel or retry store b jobs, even unscoped', async () => {
    await expect(asA((trx) => cancelJob(trx, pendingB.id, everyStore))).rejects.toBeInstanceOf(JobNotFoundError)
    await expect(asA((trx) => cancelJob(trx, runningB.id, everyStore))).rejects.toBeInstanceOf(JobNotFoundError)
    await expect(asA((trx) => retryJob(trx, cancelledB.id, everyStore))).rejects.toBeInstanceOf(JobNotFoundError)
    const b = await getJob(t.db.kysely, runningB.id)
    expect(b.state).toBe('running')
    expect((await sql<{ c: boolean }>`select cancel_requested as c from jobs where id = ${runningB.id}`.execute(t.db.kysely)).rows[0]!.c).toBe(false)
    expect((await getJob(t.db.kysely, cancelledB.id)).state).toBe('cancelled')
  })

  it('enqueue, dedupe, cancel with children and retry store a jobs', async () => {
    const parent = await asA((trx) => enqueue(trx, { type: 'test.noop', storeId: 'store-a', dedupeKey: 'scoped' }))
    const again = await asA((trx) => enqueue(trx, { type: 'test.noop', storeId: 'store-a', dedupeKey: 'scoped' }))
    expect(again).toMatchObject({ deduped: true, job: { id: parent.job.id } })
    const child = await asA((trx) => enqueue(trx, { type: 'test.noop', storeId: 'store-a', parentId: parent.job.id }))
    // A store b parent is no parent of store a's: the same answer as an unknown id.
    await expect(asA((trx) => enqueue(trx, { type: 'test.noop', storeId: 'store-a', parentId: pendingB.id }))).rejects.toBeInstanceOf(ValidationError)
    const cancelled = await asA((trx) => cancelJob(trx, parent.job.id, { storeId: 'store-a' }))
    expect(cancelled.state).toBe('cancelled')
    expect((await getJob(t.db.kysely, child.job.id)).state).toBe('cancelled')
    const retried = await asA((trx) => retryJob(trx, parent.job.id, { storeId: 'store-a' }))
    expect(retried.state).toBe('pending')
  })

  it('asks a running store a job (and its running child) to stop', async () => {
    const parent = await insertJob(t.db.kysely, { storeId: 'store-a' })
    const child = await insertJob(t.db.kysely, { storeId: 'store-a', parentId: parent.id })
    await sql`update jobs set state = 'running', attempt = 1, started_at = now() where id in (${parent.id}, ${child.id})`.execute(t.db.kysely)
    const asked = await asA((trx) => cancelJob(trx, parent.id, { storeId: 'store-a' }))
    expect(asked.state).toBe('running')
    const { rows } = await sql<{ id: string; c: boolean }>`select id, cancel_requested as c from jobs where id in (${parent.id}, ${child.id}) order by id`.execute(t.db.kysely)
    expect(rows).toEqual([
      { id: parent.id, c: true },
      { id: child.id, c: true },
    ])
  })

  it('cannot enqueue for store b: the insert is refused and nothing is written', async () => {
    const before = await storesIn(t.db.kysely, 'jobs')
    const count = async () => (await sql<{ n: number }>`select count(*)::int as n from jobs where store_id = 'store-b'`.execute(t.db.kysely)).rows[0]!.n
    const n = await count()
    await expect(asA((trx) => enqueue(trx, { type: 'test.noop', storeId: 'store-b' }))).rejects.toMatchObject({ code: '42501' })
    expect(await count()).toBe(n)
    expect(await storesIn(t.db.kysely, 'jobs')).toEqual(before)
  })

  it('enqueue into a capped store (its row locked) and a coalescing fold', async () => {
    await setStoreLiveJobCap(t.db.kysely, 'store-a', 1_000)
    try {
      const many = await asA((trx) => enqueueMany(trx, [{ type: 'test.noop', storeId: 'store-a' }, { type: 'test.noop', storeId: 'store-a' }]))
      expect(many.map((r) => r.deduped)).toEqual([false, false])
    } finally {
      await setStoreLiveJobCap(t.db.kysely, 'store-a', null)
    }
    await configureJobType(t.db.kysely, 'test.folded', { coalesce: { strategy: 'append', field: 'skus', maxDelayMs: 60_000, maxBatch: 10 } })
    const first = await asA((trx) => enqueue(trx, { type: 'test.folded', storeId: 'store-a', coalesceKey: 'k', payload: { skus: ['a'] } }))
    const second = await asA((trx) => enqueue(trx, { type: 'test.folded', storeId: 'store-a', coalesceKey: 'k', payload: { skus: ['b'] } }))
    expect(second).toMatchObject({ coalesced: true, job: { id: first.job.id, payload: { skus: ['a', 'b'] } } })
  })
})

describe('storeRowSecurity', () => {
  it('is in effect on a migrated database', async () => {
    expect(await storeRowSecurity(t.db.kysely)).toMatchObject({ inEffect: true, gap: null })
  })

  it('says the role is missing', async () => {
    expect(await storeRowSecurity(t.db.kysely, { role: 'backroom_no_such_role' })).toMatchObject({ inEffect: false, gap: 'role_missing' })
  })

  it('says which table lost its row security', async () => {
    await sql`alter table store_pauses disable row level security`.execute(t.db.kysely)
    try {
      const found = await storeRowSecurity(t.db.kysely)
      expect(found).toMatchObject({ inEffect: false, gap: 'tables_unpoliced' })
      expect(found.detail).toContain('store_pauses')
    } finally {
      await sql`alter table store_pauses enable row level security`.execute(t.db.kysely)
    }
  })

  describe('for a login that is not a member of the role', () => {
    const login = `backroom_t_login_${process.pid}_${Date.now()}`
    let db: Db | null = null
    beforeAll(async () => {
      await adminQuery(t.serverUrl, `create role ${login} login password '${login}'`)
      db = connect({ connectionString: withUser(t.url, login, login), max: 1 })
    })
    afterAll(async () => {
      await db?.close()
      await adminQuery(t.serverUrl, `drop role if exists ${login}`)
    })

    it('says it cannot switch', async () => {
      expect(await storeRowSecurity(db!.kysely)).toMatchObject({ inEffect: false, gap: 'cannot_switch' })
    })
  })
})

/** `url` with another login. */
function withUser(url: string, user: string, password: string): string {
  const u = new URL(url)
  u.username = user
  u.password = password
  return u.toString()
}
