import { describe, expect, it } from 'vitest'
import { MAX_KEPT_ERRORS } from '../config.ts'
import { enqueue } from '../enqueue.ts'
import { getJob } from '../admin.ts'
import { useTestDatabase } from '../testing/use-test-database.ts'
import { claimBatch, extendLeases } from './claim.ts'
import { retryLater } from './history.ts'
import { promoteDue } from './maintenance.ts'

const t = useTestDatabase()

async function claimOne(type: string) {
  const [row] = await claimBatch(t.db.kysely, { workerId: 'w', limit: 1, leaseMs: 30_000, types: [type] })
  if (!row) throw new Error('nothing to claim')
  return { id: row.id, attempt: row.attempt, leaseToken: row.lease_token }
}

describe('extendLeases', () => {
  it('is a HOT update: heartbeats touch no index', async () => {
    await enqueue(t.db.kysely, { type: 'test.hot', storeId: 's' })
    const fence = await claimOne('test.hot')
    const stats = async () => {
      await t.db.pool.query('select pg_stat_force_next_flush()')
      const { rows } = await t.db.pool.query<{ upd: string; hot: string }>(
        `select n_tup_upd as upd, n_tup_hot_upd as hot from pg_stat_user_tables where relname = 'jobs'`,
      )
      return { upd: Number(rows[0]!.upd), hot: Number(rows[0]!.hot) }
    }
    const before = await stats()
    for (let i = 0; i < 20; i++) expect(await extendLeases(t.db.kysely, { fences: [fence], leaseMs: 30_000 })).toHaveLength(1)
    const after = await stats()
    expect(after.upd - before.upd).toBe(20)
    expect(after.hot - before.hot).toBe(20)
  })
})

describe('retryLater', () => {
  it(`keeps only the last ${MAX_KEPT_ERRORS} errors`, async () => {
    const { job } = await enqueue(t.db.kysely, { type: 'test.errs', storeId: 's' })
    for (let i = 1; i <= MAX_KEPT_ERRORS + 3; i++) {
      const fence = await claimOne('test.errs')
      const error = { attempt: fence.attempt, at: new Date().toISOString(), code: 'e', message: `failure ${i}` }
      expect(await retryLater(t.db.kysely, { fence, runAt: new Date(Date.now() - 1), error })).toBe(true)
      await promoteDue(t.db.kysely, { limit: 10 })
    }
    const after = await getJob(t.db.kysely, job.id)
    expect(after.attempt).toBe(MAX_KEPT_ERRORS + 3)
    expect(after.errors).toHaveLength(MAX_KEPT_ERRORS)
    expect(after.errors[0]!.message).toBe('failure 4')
    expect(after.lastError!.message).toBe(`failure ${MAX_KEPT_ERRORS + 3}`)
  })
})
