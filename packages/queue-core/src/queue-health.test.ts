import { beforeAll, describe, expect, it } from 'vitest'
import { viewRows } from './db/queue-health.ts'
import { ValidationError } from './errors.ts'
import { DEFAULT_LONG_RUNNING_MS, queueHealth } from './queue-health.ts'
import { useTestDatabase } from './testing/use-test-database.ts'

const t = useTestDatabase()
const MIN = 60_000

/** A live job in `state`, created `createdAgoMs` ago (running ones started then too). */
async function live(storeId: string, type: string, state: 'pending' | 'scheduled' | 'running' | 'paused', createdAgoMs = 0): Promise<void> {
  await t.db.pool.query(
    `insert into jobs (type, store_id, state, attempt, created_at, run_at, started_at, lease_token, locked_until)
     select $1, $2, $3, case when $3 = 'running' then 1 else 0 end, c, c,
            case when $3 = 'running' then c end,
            case when $3 = 'running' then gen_random_uuid() end,
            case when $3 = 'running' then now() + interval '1 minute' end
     from (select now() - $4 * interval '1 ms' as c) x`,
    [type, storeId, state, createdAgoMs],
  )
}

/**
 * Store a: 3 pending a.x (oldest 10 min), 1 running a.x for an hour, 1 scheduled a.y.
 * Store b: 1 pending a.x (1 min), 2 paused a.y, 1 running a.y (1 min).
 */
beforeAll(async () => {
  await live('a', 'a.x', 'pending', 10 * MIN)
  await live('a', 'a.x', 'pending', 2 * MIN)
  await live('a', 'a.x', 'pending')
  await live('a', 'a.x', 'running', 60 * MIN)
  await live('a', 'a.y', 'scheduled')
  await live('b', 'a.x', 'pending', MIN)
  await live('b', 'a.y', 'paused')
  await live('b', 'a.y', 'paused')
  await live('b', 'a.y', 'running', MIN)
})

describe('queueHealth', () => {
  it('gives the view’s figures per type, at the view’s long-running threshold', async () => {
    const h = await queueHealth(t.db.kysely, { thresholds: { longRunningMs: DEFAULT_LONG_RUNNING_MS } })
    const view = await viewRows(t.db.kysely)
    expect(view.length).toBe(2)
    for (const v of view) {
      const line = h.byType.find((l) => l.type === v.type)!
      expect(line).toMatchObject({ pending: v.pending, scheduled: v.scheduled, running: v.running, paused: v.paused, longRunning: v.long_running })
      if (v.oldest_pending_s === null) expect(line.oldestPendingMs).toBeNull()
      else expect(Math.abs(line.oldestPendingMs! - v.oldest_pending_s * 1000)).toBeLessThan(5_000)
    }
  })

  it('counts overall, per store and per store and type', async () => {
    const h = await queueHealth(t.db.kysely)
    expect(h.overall).toMatchObject({ pending: 4, scheduled: 1, running: 2, paused: 2, longRunning: 1 })
    expect(h.overall.oldestPendingMs).toBeGreaterThanOrEqual(10 * MIN - 1_000)
    // Largest backlog first.
    expect(h.byStore.map((s) => [s.storeId, s.pending, s.running, s.paused])).toEqual([
      ['a', 3, 1, 0],
      ['b', 1, 1, 2],
    ])
    expect(h.byStoreType.find((l) => l.storeId === 'b' && l.type === 'a.y')).toMatchObject({ pending: 0, paused: 2, running: 1, oldestPendingMs: null })
  })

  it('raises backlog, oldest_pending and long_running against the thresholds', async () => {
    const h = await queueHealth(t.db.kysely, { thresholds: { backlog: 2, oldestPendingMs: 5 * MIN, longRunningMs: 30 * MIN } })
    expect(h.thresholds).toEqual({ backlog: 2, oldestPendingMs: 5 * MIN, longRunningMs: 30 * MIN })
    expect(h.overall.alerts).toEqual(['backlog', 'oldest_pending', 'long_running'])
    expect(h.byStore.find((s) => s.storeId === 'a')!.alerts).toEqual(['backlog', 'oldest_pending', 'long_running'])
    // b: one pending job a minute old, its running job started a minute ago.
    expect(h.byStore.find((s) => s.storeId === 'b')!.alerts).toEqual([])
    // A lower long-running threshold catches b's job too.
    const strict = await queueHealth(t.db.kysely, { thresholds: { longRunningMs: 30_000 } })
    expect(strict.byStore.find((s) => s.storeId === 'b')).toMatchObject({ longRunning: 1, alerts: ['long_running'] })
  })

  it('covers only the given store on every line when scoped', async () => {
    const h = await queueHealth(t.db.kysely, { storeId: 'b' })
    expect(h.overall).toMatchObject({ pending: 1, scheduled: 0, running: 1, paused: 2 })
    expect(h.byStore.map((s) => s.storeId)).toEqual(['b'])
    expect(h.byStoreType.every((l) => l.storeId === 'b')).toBe(true)
    expect(h.byType.map((l) => [l.type, l.pending, l.paused])).toEqual([
      ['a.x', 1, 0],
      ['a.y', 0, 2],
    ])
  })

  it('answers zeros for a store with no jobs', async () => {
    const h = await queueHealth(t.db.kysely, { storeId: 'nobody' })
    expect(h.overall).toEqual({ pending: 0, scheduled: 0, running: 0, paused: 0, oldestPendingMs: null, longRunning: 0, alerts: [] })
    expect(h.byType).toEqual([])
    expect(h.byStore).toEqual([])
  })

  it('returns only the storeLimit stores with the largest backlog, with their types', async () => {
    const h = await queueHealth(t.db.kysely, { storeLimit: 1 })
    expect(h.byStore.map((s) => s.storeId)).toEqual(['a'])
    expect(new Set(h.byStoreType.map((l) => l.storeId))).toEqual(new Set(['a']))
  })

  it('rejects options out of range', async () => {
    await expect(queueHealth(t.db.kysely, { storeLimit: 0 })).rejects.toThrow(ValidationError)
    await expect(queueHealth(t.db.kysely, { thresholds: { backlog: -1 } })).rejects.toThrow(ValidationError)
    await expect(queueHealth(t.db.kysely, { storeId: '' })).rejects.toThrow(ValidationError)
  })
})
