import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { claimBatch } from '../src/db/claim.ts'
import { connect, fromPgClient, type Db } from '../src/db/connect.ts'
import { finishMany } from '../src/db/history.ts'
import { enqueue } from '../src/enqueue.ts'
import { createRetention } from '../src/maintenance/retention.ts'
import { waitFor } from '../src/testing/fixtures.ts'
import { useTestDatabase } from '../src/testing/use-test-database.ts'
import type { Fence } from '../src/types.ts'

/**
 * job_history is partitioned by finish day; the leader's retention service
 * creates the days ahead and drops whole old days. These tests are about the
 * leader's retention running while *other* workers (processes without the
 * leadership, or before the first election) complete jobs: their rows go to
 * job_history_default whenever the day's partition does not exist yet.
 * Each test file starts from the migrated template, which has no daily partition.
 */
const t = useTestDatabase()

let worker: Db
let leader: Db
beforeAll(() => {
  worker = connect({ connectionString: t.url, max: 2, applicationName: 'retention-worker' })
  leader = connect({ connectionString: t.url, max: 2, applicationName: 'retention-leader' })
})
afterAll(async () => {
  await Promise.all([worker, leader].map((db) => db?.close()))
})

const DAY = 86_400_000
let typeSeq = 0

/** A job claimed by the worker, ready to be finished with its fence. */
async function claimedJob(): Promise<Fence> {
  const type = `retention.case${++typeSeq}`
  await enqueue(t.db.kysely, { type, storeId: 'store-r' })
  const [row] = await claimBatch(worker.kysely, { workerId: 'worker', limit: 1, leaseMs: 60_000, types: [type] })
  return { id: String(row!.id), attempt: row!.attempt, leaseToken: row!.lease_token }
}

describe('history retention while other workers complete jobs', () => {
  it('neither fails nor holds up a completion that commits during its pass', async () => {
    // A worker's completion is in flight: its transaction has written to the default partition...
    const fence = await claimedJob()
    const client = new pg.Client({ connectionString: t.url, application_name: 'retention-completer' })
    await client.connect()
    try {
      await client.query('begin')
      expect(await finishMany(fromPgClient(client), [{ fence, state: 'completed', result: null, error: null }])).toEqual([fence.id])
      // ...when the leader's retention pass checks the default partition (nothing committed there
      // yet) and creates partitions, which needs a lock on it.
      let settled = false
      const pass = createRetention({ db: leader.kysely, daysAhead: 2 })
        .runOnce()
        .then((counts) => ({ counts }), (error: unknown) => ({ error: String(error) }))
        .finally(() => {
          settled = true
        })
      await waitFor(
        async () =>
          settled ||
          (
            await t.db.pool.query(
              `select count(*)::int as n from pg_stat_activity where application_name = 'retention-leader' and wait_event_type = 'Lock'`,
            )
          ).rows[0].n === 1,
        { timeoutMs: 10_000, intervalMs: 10, what: 'the retention pass to reach the partition lock' },
      )
      await client.query('commit')
      expect(await pass).toEqual({ counts: expect.any(Object) })
      expect((await t.db.pool.query(`select state from job_history where id = $1`, [fence.id])).rows).toEqual([{ state: 'completed' }])
    } finally {
      await client.end()
    }
  })

  it('drops rows finished before the first retention pass once they are past the retention window', async () => {
    // A worker without the leadership completes a job before the leader ever ran retention.
    const fence = await claimedJob()
    expect(await finishMany(worker.kysely, [{ fence, state: 'completed', result: null, error: null }])).toEqual([fence.id])
    // The leader's first pass, then one after the 14-day window has passed for that job.
    await createRetention({ db: leader.kysely }).runOnce()
    const later = new Date(Date.now() + 20 * DAY)
    await createRetention({ db: leader.kysely, now: () => later, retentionDays: 14 }).runOnce()
    const { rows } = await t.db.pool.query('select tableoid::regclass::text as part from job_history where id = $1', [fence.id])
    expect(rows, 'a finished job older than the retention window is still kept').toEqual([])
  })
})
