import { sql } from 'kysely'
import { describe, expect, it } from 'vitest'
import { enqueueMany } from '../enqueue.ts'
import { useTestDatabase } from '../testing/use-test-database.ts'
import { claimBatch, claimStatement, useClaimSettings } from './claim.ts'
import { connectClaimSession } from './connect.ts'
import { planNodes as nodes, preparedGenericPlan, type PlanNode } from '../testing/query-plans.ts'

const t = useTestDatabase()

describe('claimBatch', () => {
  it('claims in priority order, then fairly between stores, never the same job twice', async () => {
    // One store floods the queue first, then 20 small stores add two jobs each.
    await enqueueMany(t.db.kysely, Array.from({ length: 2_000 }, () => ({ type: 'test.a', storeId: 'big' })))
    await enqueueMany(
      t.db.kysely,
      Array.from({ length: 40 }, (_, i) => ({ type: 'test.a', storeId: `small-${i % 20}` })),
    )
    await enqueueMany(t.db.kysely, [{ type: 'test.a', storeId: 'late', priority: 'urgent' }])
    const first = await claimBatch(t.db.kysely, { workerId: 'w1', limit: 1, leaseMs: 30_000, types: null })
    expect(first[0]?.store_id).toBe('late')
    const next = await claimBatch(t.db.kysely, { workerId: 'w1', limit: 100, leaseMs: 30_000, types: null })
    const small = next.filter((r) => r.store_id.startsWith('small-'))
    // Every small-store job is within the first 100 claims despite 2,000 older big-store jobs.
    expect(small).toHaveLength(40)
    const ids = new Set([...first, ...next].map((r) => r.id))
    expect(ids.size).toBe(101)
    expect(next.every((r) => r.attempt === 1 && r.state === 'running' && r.lease_token)).toBe(true)
  })

  it('gives concurrent claimers disjoint jobs', async () => {
    await t.db.pool.query('delete from jobs')
    await enqueueMany(t.db.kysely, Array.from({ length: 500 }, (_, i) => ({ type: 'test.b', storeId: `s${i % 7}` })))
    const batches = await Promise.all(
      Array.from({ length: 10 }, (_, w) => claimBatch(t.db.kysely, { workerId: `w${w}`, limit: 60, leaseMs: 30_000, types: ['test.b'] })),
    )
    const all = batches.flat().map((r) => r.id)
    expect(all).toHaveLength(500)
    expect(new Set(all).size).toBe(500)
  })

  it('plans as an index scan with no sort at 1,000,000 history rows and 100,000 pending', async () => {
    await t.db.pool.query('delete from jobs')
    await t.db.pool.query(`
      insert into job_history (id, type, queue, store_id, priority, state, attempt, payload, errors, run_at, created_at, finished_at)
      select g, 'test.done', 'default', 's' || (g % 1000), 5, 'completed', 1, '{}', '[]', now(), now(), now() - (g % 30) * interval '1 day'
      from generate_series(1, 1000000) g`)
    await t.db.pool.query(`
      insert into jobs (type, store_id, priority, claim_priority, state, vtime, payload)
      select 'test.c', 's' || (g % 1000), p, p, 'pending', g / 1000.0, '{}'
      from (select g, (array[1,2,5,10])[1 + g % 4] as p from generate_series(1, 100000) g) s`)
    // Planned both before the first ANALYZE (no statistics: the case that
    // once produced a sort) and after it.
    for (const analyzed of [false, true]) {
      if (analyzed) await t.db.pool.query('analyze jobs; analyze job_history')
      for (const types of [null, ['test.c']]) {
        const plan = await t.db.kysely.transaction().execute(async (trx) => {
          await useClaimSettings(trx)
          const explained = await sql<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>`
            explain (format json) ${claimStatement({ workerId: 'w', limit: 100, leaseMs: 30_000, types })}
          `.execute(trx)
          return explained.rows[0]!['QUERY PLAN'][0]!.Plan
        })
        // The worker's claim session carries the same settings per session instead of per transaction.
        const session = connectClaimSession(t.url)
        const sessionPlan = await sql<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>`
          explain (format json) ${claimStatement({ workerId: 'w', limit: 100, leaseMs: 30_000, types })}
        `.execute(session.kysely)
        const genericPlan = await preparedGenericPlan(session.pool, t.db.kysely, {
          prepare: claimStatement({ workerId: 'w', limit: 0, leaseMs: 30_000, types }),
          explain: claimStatement({ workerId: 'w', limit: 100, leaseMs: 30_000, types }),
        })
        await session.close()
        for (const all of [nodes(plan), nodes(sessionPlan.rows[0]!['QUERY PLAN'][0]!.Plan), nodes(genericPlan)]) {
          expect(all.some((n) => n['Node Type'] === 'Index Scan' && n['Index Name'] === 'jobs_claim_idx')).toBe(true)
          expect(all.some((n) => n['Node Type'] === 'Sort' || n['Node Type'] === 'Incremental Sort')).toBe(false)
          expect(all.some((n) => n['Node Type'] === 'Hash Join' || n['Node Type'] === 'Merge Join')).toBe(false)
        }
      }
    }
    const claimed = await claimBatch(t.db.kysely, { workerId: 'w', limit: 100, leaseMs: 30_000, types: null })
    expect(claimed).toHaveLength(100)
    expect(claimed.every((r) => r.priority === 1)).toBe(true)
  })
})
