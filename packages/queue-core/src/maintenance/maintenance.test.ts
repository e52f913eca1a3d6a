import pino from 'pino'
import { describe, expect, it } from 'vitest'
import { enqueue } from '../enqueue.ts'
import { getJob } from '../admin.ts'
import { useTestDatabase } from '../testing/use-test-database.ts'
import { waitFor } from '../testing/fixtures.ts'
import { claimBatch } from '../db/claim.ts'
import { acquireLease } from '../db/leader.ts'
import { rescueExpired } from '../db/maintenance.ts'
import { createLeader, type LeaderLease } from './leader.ts'
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
      createLeader({ db: t.db.kysely, log, intervalMs: 100, onElected: () => elected.push(name), onDeposed: () => {} })
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

describe('the leader lease', () => {
  const lease = async () =>
    (await t.db.pool.query<{ holder: string; term: string; left_ms: number }>(
      `select holder, term::text, (extract(epoch from expires_at - now()) * 1000)::float8 as left_ms from leader_lease`,
    )).rows[0]!

  it('fences a rescue on its term: a superseded term changes nothing; the current one rescues and renews the lease', async () => {
    await t.db.pool.query('delete from leader_lease')
    const old = await acquireLease(t.db.kysely, { holder: 'old', ttlMs: 1_000 })
    expect(old).toEqual({ acquired: true, term: 1 })
    // While the lease runs, nobody else gets it.
    expect(await acquireLease(t.db.kysely, { holder: 'new', ttlMs: 60_000 })).toMatchObject({ acquired: false, holder: 'old' })
    const { job } = await enqueue(t.db.kysely, { type: 'test.fenced', storeId: 's' })
    await claimBatch(t.db.kysely, { workerId: 'gone', limit: 1, leaseMs: 1, types: ['test.fenced'] })
    // The old holder's lease runs out and another process takes over with the next term.
    const taken = await waitFor(
      async () => {
        const attempt = await acquireLease(t.db.kysely, { holder: 'new', ttlMs: 60_000 })
        return attempt.acquired ? attempt : null
      },
      { timeoutMs: 5_000, what: 'the old lease to expire' },
    )
    expect(taken.term).toBe(2)
    await waitFor(async () => (await t.db.pool.query('select locked_until < now() as over from jobs where id = $1', [job.id])).rows[0]?.over)

    // A statement of the deposed leader, arriving late, changes nothing.
    const stale = await rescueExpired(t.db.kysely, { limit: 10, maxAttempts: new Map(), lease: { holder: 'old', term: 1, ttlMs: 1_000 } })
    expect(stale).toMatchObject({ leaseHeld: false, rescued: 0, failed: 0 })
    expect((await getJob(t.db.kysely, job.id)).state).toBe('running')
    expect(await lease()).toMatchObject({ holder: 'new', term: '2' })

    // The current leader's rescue acts, and renews the lease as it goes.
    await t.db.pool.query(`update leader_lease set expires_at = now() + interval '5 seconds'`)
    const current = await rescueExpired(t.db.kysely, { limit: 10, maxAttempts: new Map(), lease: { holder: 'new', term: 2, ttlMs: 60_000 } })
    expect(current).toMatchObject({ leaseHeld: true, rescued: 1, failed: 0 })
    expect((await getJob(t.db.kysely, job.id)).state).toBe('pending')
    expect((await lease()).left_ms).toBeGreaterThan(50_000)
  })

  it('deposes a leader whose lease another process took, which then waits as a follower until the lease is free', async () => {
    await t.db.pool.query('delete from leader_lease')
    const events: string[] = []
    let first: LeaderLease | undefined
    const a = createLeader({
      db: t.db.kysely,
      log,
      holder: 'a',
      ttlMs: 1_000,
      intervalMs: 50,
      onElected: (l) => {
        first ??= l
        events.push(`elected ${l.term}`)
      },
      onDeposed: () => void events.push('deposed'),
    })
    await a.start()
    expect(a.isLeader).toBe(true)
    expect(await lease()).toMatchObject({ holder: 'a', term: '1' })
    // Another process holds the lease now (as if a's had expired while it was frozen).
    await t.db.pool.query(`update leader_lease set holder = 'b', term = term + 1, expires_at = now() + interval '1 minute'`)
    // a finds out at its next renewal (0.8 of the TTL in), stops its services, and runs no pass under its old term.
    await waitFor(() => events.includes('deposed'), { timeoutMs: 5_000, what: 'a to depose itself' })
    expect(a.isLeader).toBe(false)
    expect(first!.held).toBe(false)
    expect(await first!.ensure()).toBe(false)
    expect(await lease()).toMatchObject({ holder: 'b', term: '2' })
    // Once b's lease is over, a takes it in a new term.
    await t.db.pool.query(`update leader_lease set expires_at = now()`)
    await waitFor(() => a.isLeader, { timeoutMs: 5_000, what: 'a to take the free lease' })
    expect(events).toEqual(['elected 1', 'deposed', 'elected 3'])
    await a.stop()
    expect(events).toEqual(['elected 1', 'deposed', 'elected 3', 'deposed'])
    // Released: free for the next leader at once.
    expect((await lease()).left_ms).toBeLessThanOrEqual(0)
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
