import { sql } from 'kysely'
import { describe, expect, it } from 'vitest'
import { configureJobType } from '../settings.ts'
import { useTestDatabase } from '../testing/use-test-database.ts'
import { useClaimSettings } from './claim.ts'
import { claimLimitedStatement } from './claim-limited.ts'
import { connectClaimSession } from './connect.ts'
import { planNodes as nodes, preparedGenericPlan, type PlanNode } from '../testing/query-plans.ts'

const t = useTestDatabase()

describe('the limited claim plan', () => {
  it('touches rows in proportion to the claim and the running set, not to the backlog', async () => {
    await t.db.pool.query(`
      insert into jobs (type, store_id, priority, claim_priority, state, vtime, payload)
      select 'test.lim', 's' || (g % 100), 5, 5, 'pending', g / 100.0, '{}' from generate_series(1, 20000) g`)
    await t.db.pool.query(`
      update jobs set state = 'running', lease_token = gen_random_uuid(), locked_until = now() + interval '1 hour'
      where id in (select id from jobs order by id limit 500)`)
    // Limits that never bind: every claim takes the limited path and passes every candidate.
    await configureJobType(t.db.kysely, 'test.lim', { maxRunningPerStore: 100_000, maxRunning: 1_000_000 })
    await t.db.pool.query('analyze jobs')
    const LIMIT = 100
    const plan = await t.db.kysely.transaction().execute(async (trx) => {
      await useClaimSettings(trx)
      const explained = await sql<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>`
        explain (analyze, format json) ${claimLimitedStatement({ workerId: 'w', limit: LIMIT, leaseMs: 30_000, types: ['test.lim'] })}
      `.execute(trx)
      return explained.rows[0]!['QUERY PLAN'][0]!.Plan
    })
    // The plan a worker reuses: the statement is prepared and forces its generic plan (claimLimitedOnSession).
    const session = connectClaimSession(t.url)
    const args = { workerId: 'w', leaseMs: 30_000, types: ['test.lim'] }
    const generic = await preparedGenericPlan(
      session.pool,
      t.db.kysely,
      { prepare: claimLimitedStatement({ ...args, limit: 0 }), explain: claimLimitedStatement({ ...args, limit: LIMIT }) },
      { analyze: true },
    ).finally(() => session.close())
    for (const all of [nodes(plan), nodes(generic)]) {
      // Candidates (about LIMIT + 32) and the 500 running jobs are all a claim should read. A plan that joins
      // the chosen ids against the backlog (it once did: 3.5 s per claim of 500) reads all 19,500 pending rows.
      const readsOfJobs = all.filter((n) => n['Relation Name'] === 'jobs')
      const worst = Math.max(...readsOfJobs.map((n) => (n['Actual Rows'] ?? 0) * (n['Actual Loops'] ?? 0)))
      expect(worst).toBeLessThan(2_000)
      expect(all.some((n) => n['Node Type'] === 'Index Scan' && n['Index Name'] === 'jobs_claim_idx')).toBe(true)
      expect(all.some((n) => n['Node Type'] === 'Seq Scan' && n['Relation Name'] === 'jobs')).toBe(false)
    }
    // Both claimed a full batch (the second behind the first).
    expect(nodes(generic)[0]!['Actual Rows']).toBe(LIMIT)
  })
})
