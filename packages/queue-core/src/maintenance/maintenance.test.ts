import pino from 'pino'
import { describe, expect, it } from 'vitest'
import { enqueue } from '../enqueue.ts'
import { getJob } from '../admin.ts'
import { useTestDatabase } from '../testing/use-test-database.ts'
import { waitFor } from '../testing/fixtures.ts'
import { createLeader } from './leader.ts'
import { createPromoter } from './promoter.ts'
import { createRetention } from './retention.ts'
import { createVacuumer } from './vacuumer.ts'

const t = useTestDatabase()
const log = pino({ level: 'silent' })

describe('promoter', () => {
  it('moves due scheduled jobs to pending and leaves future ones', async () => {
    const due = await enqueue(t.db.kysely, { type: 'test.p', storeId: 's', delayMs: 150 })
    const later = await enqueue(t.db.kysely, { type: 'test.p', storeId: 's', delayMs: 60_000 })
    expect(due.job.state).toBe('scheduled')
    await new Promise((r) => setTimeout(r, 250))
    const counts = await createPromoter({ db: t.db.kysely }).runOnce()
    expect(counts).toEqual({ promoted: 1 })
    expect((await getJob(t.db.kysely, due.job.id)).state).toBe('pending')
    expect((await getJob(t.db.kysely, later.job.id)).state).toBe('scheduled')
  })
})

describe('retention', () => {
  it('creates daily history partitions from tomorrow on and drops whole days past retention', async () => {
    const now = new Date('2030-01-10T12:00:00Z')
    const retention = createRetention({ db: t.db.kysely, now: () => now, retentionDays: 3, daysAhead: 2 })
    expect(await retention.runOnce()).toEqual({ created: 2, dropped: 0, deleted: 0 })
    const old = createRetention({ db: t.db.kysely, now: () => new Date('2030-01-05T00:00:00Z'), retentionDays: 30, daysAhead: 1 })
    await old.runOnce()
    const { rows } = await t.db.pool.query<{ relname: string }>(
      `select relname from pg_class where relname like 'job_history_p2030%' and relkind = 'r' order by relname`,
    )
    expect(rows.map((r) => r.relname)).toEqual(['job_history_p20300106', 'job_history_p20300111', 'job_history_p20300112'])
    // 2030-01-06 ended more than 3 days before 2030-01-10 12:00; the 11th and 12th stay.
    expect(await retention.runOnce()).toEqual({ created: 0, dropped: 1, deleted: 0 })
  })
})

describe('leader election', () => {
  it('elects exactly one leader and hands over when it stops', async () => {
    const elected: string[] = []
    const make = (name: string) =>
      createLeader({ connectionString: t.url, log, intervalMs: 100, onElected: () => elected.push(name), onDeposed: () => {} })
    const a = make('a')
    const b = make('b')
    await a.start()
    await b.start()
    await new Promise((r) => setTimeout(r, 300))
    expect([a.isLeader, b.isLeader].filter(Boolean)).toHaveLength(1)
    const [first, second] = a.isLeader ? [a, b] : [b, a]
    await first.stop()
    await waitFor(() => second.isLeader, { timeoutMs: 5_000 })
    expect(elected).toHaveLength(2)
    await second.stop()
  })
})

describe('vacuumer', () => {
  it('vacuums the jobs table once its dead row versions pass the threshold', async () => {
    await t.db.pool.query(`insert into jobs (type, store_id, state, payload) select 'test.v', 's', 'pending', '{}' from generate_series(1, 300)`)
    await t.db.pool.query(`delete from jobs where type = 'test.v'`)
    await t.db.pool.query('select pg_stat_force_next_flush()')
    const vacuumer = createVacuumer({ db: t.db.kysely, deadTuples: 200 })
    expect(await vacuumer.runOnce()).toMatchObject({ vacuumed: 1 })
    await t.db.pool.query('select pg_stat_force_next_flush()')
    const { rows } = await t.db.pool.query(`select n_dead_tup::int as dead, vacuum_count + autovacuum_count as runs from pg_stat_user_tables where relname = 'jobs'`)
    expect(rows[0].dead).toBe(0)
    expect(Number(rows[0].runs)).toBeGreaterThan(0)
    // Nothing dead any more: the next pass does nothing.
    expect(await vacuumer.runOnce()).toEqual({ vacuumed: 0 })
  })
})
