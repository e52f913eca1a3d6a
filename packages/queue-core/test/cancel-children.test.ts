import { setTimeout as sleep } from 'node:timers/promises'
import { Type } from 'typebox'
import { afterEach, describe, expect, it } from 'vitest'
import { cancelJob, getJob } from '../src/admin.ts'
import { cancelChildrenStatement } from '../src/db/cancel-children.ts'
import { claimBatch } from '../src/db/claim.ts'
import { connect, type Db } from '../src/db/connect.ts'
import { enqueue, enqueueMany } from '../src/enqueue.ts'
import { JobNotFoundError, ValidationError } from '../src/errors.ts'
import { defineHandler } from '../src/handler.ts'
import { pauseStore } from '../src/store-ops.ts'
import { waitFor } from '../src/testing/fixtures.ts'
import { planNodes, type PlanNode } from '../src/testing/query-plans.ts'
import { useTestDatabase } from '../src/testing/use-test-database.ts'
import type { EnqueueSpec, Job } from '../src/types.ts'
import { createWorkerPool, type WorkerPool } from '../src/worker/worker-pool.ts'

const t = useTestDatabase({ poolMax: 12 })
const cleanups: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

const add = async (spec: Partial<EnqueueSpec> & { type: string; storeId: string }): Promise<Job> => (await enqueue(t.db.kysely, spec)).job
const finished = (id: string) =>
  waitFor(async () => {
    const job = await getJob(t.db.kysely, id)
    return ['completed', 'failed', 'cancelled'].includes(job.state) ? job : null
  }, { what: `job ${id} to finish` })
/** The live row's state and cancellation flag, or null once it left `jobs`. */
async function liveRow(id: string): Promise<{ state: string; cancel_requested: boolean } | null> {
  const { rows } = await t.db.pool.query('select state, cancel_requested from jobs where id = $1', [id])
  return rows[0] ?? null
}
/** Live descendants of `parentId` that nobody asked to stop: what a cascade must leave none of. */
async function unstopped(parentId: string): Promise<number> {
  const { rows } = await t.db.pool.query<{ n: number }>(
    `with recursive tree as (select id, state, cancel_requested from jobs where parent_id = $1
                             union select j.id, j.state, j.cancel_requested from tree join jobs j on j.parent_id = tree.id)
     select count(*)::int as n from tree where state <> 'running' or not cancel_requested`,
    [parentId],
  )
  return rows[0]!.n
}
/** A second pool: a claim or an enqueue held open in a transaction there runs beside the code under test. */
function otherConnection(): Db {
  const db = connect({ connectionString: t.url, max: 4 })
  cleanups.push(() => db.close())
  return db
}
/** Runs `body` in a transaction on `db` and keeps it open until `release()`; `ready` resolves with body's value. */
function heldTransaction<T>(db: Db, body: (trx: Db['kysely']) => Promise<T>) {
  let release!: () => void
  const gate = new Promise<void>((r) => (release = r))
  let ready!: (value: T) => void
  const started = new Promise<T>((r) => (ready = r))
  const done = db.kysely.transaction().execute(async (trx) => {
    ready(await body(trx))
    await gate
  })
  // A failed assertion must not leave the transaction (and the pool's close) waiting.
  cleanups.push(async () => {
    release()
    await done.catch(() => {})
  })
  return { started, release, done }
}

describe('cancelJob on a parent', () => {
  it('cancels waiting descendants at once and aborts running ones; other jobs are left alone', async () => {
    let aborted = 0
    const kid = defineHandler({
      type: 'test.kid',
      payload: Type.Object({}),
      run: async (_p, { signal }) => {
        await new Promise((_, reject) => signal.addEventListener('abort', () => (aborted++, reject(signal.reason)), { once: true }))
      },
    })
    const parent = await add({ type: 'test.parent', storeId: 's1' })
    const running = await add({ type: 'test.kid', storeId: 's1', parentId: parent.id })
    const pending = await add({ type: 'test.idle', storeId: 's1', parentId: parent.id })
    const scheduled = await add({ type: 'test.idle', storeId: 's1', parentId: parent.id, delayMs: 60_000 })
    const paused = await add({ type: 'test.held', storeId: 's1', parentId: parent.id })
    await pauseStore(t.db.kysely, 's1', { type: 'test.held' })
    const grandchild = await add({ type: 'test.idle', storeId: 's1', parentId: pending.id })
    const unrelated = await add({ type: 'test.idle', storeId: 's1' })
    const other = await add({ type: 'test.parent', storeId: 's1' })
    const othersChild = await add({ type: 'test.idle', storeId: 's1', parentId: other.id })
    expect(paused.state).toBe('pending')
    expect(await liveRow(paused.id)).toMatchObject({ state: 'paused' })

    const pool = createWorkerPool({ db: t.db.kysely, connectionString: t.url, handlers: [kid], concurrency: 2, leaseMs: 1_500, pollIntervalMs: 100 })
    cleanups.push(() => pool.stop())
    await pool.start()
    await waitFor(async () => (await liveRow(running.id))?.state === 'running', { what: 'the child to run' })

    expect((await cancelJob(t.db.kysely, parent.id)).state).toBe('cancelled')
    for (const job of [pending, scheduled, paused, grandchild]) {
      const done = await getJob(t.db.kysely, job.id)
      expect([done.state, done.lastError?.code], job.id).toEqual(['cancelled', 'parent_cancelled'])
      expect(done.lastError?.message).toContain(`job ${parent.id}`)
    }
    const ended = await finished(running.id)
    expect([ended.state, ended.lastError?.code]).toEqual(['cancelled', 'cancelled'])
    expect(aborted).toBe(1)
    for (const job of [unrelated, other, othersChild]) expect((await getJob(t.db.kysely, job.id)).state).toBe('pending')
    // Again: a no-op for the parent, and nothing left to walk.
    await expect(cancelJob(t.db.kysely, parent.id)).resolves.toMatchObject({ state: 'cancelled' })
  })

  it('keeps stores apart: another store can neither cancel the parent nor hang a child on it, and the cascade stays in the store', async () => {
    const parent = await add({ type: 'test.parent', storeId: 'a' })
    const child = await add({ type: 'test.idle', storeId: 'a', parentId: parent.id })
    await expect(cancelJob(t.db.kysely, parent.id, { storeId: 'b' })).rejects.toBeInstanceOf(JobNotFoundError)
    expect(await liveRow(parent.id)).toMatchObject({ state: 'pending' })
    await expect(add({ type: 'test.idle', storeId: 'b', parentId: parent.id })).rejects.toMatchObject({
      code: 'validation_failed',
      details: { field: 'parentId', reason: 'parent_not_live' },
    })
    // A row of store b naming a's job (written by hand: enqueue refuses it) is not b's child of a's job.
    const { rows } = await t.db.pool.query<{ id: string }>(
      `insert into jobs (type, store_id, state, parent_id) values ('test.idle', 'b', 'pending', $1) returning id`,
      [parent.id],
    )
    expect((await cancelJob(t.db.kysely, parent.id, { storeId: 'a' })).state).toBe('cancelled')
    expect((await getJob(t.db.kysely, child.id)).state).toBe('cancelled')
    expect(await liveRow(rows[0]!.id)).toMatchObject({ state: 'pending' })
  })

  it('refuses a parent that is malformed, unknown, finished or being cancelled, writing nothing of the batch', async () => {
    const count = async () => (await t.db.pool.query<{ n: number }>(`select count(*)::int as n from jobs where store_id = 'v'`)).rows[0]!.n
    for (const parentId of ['abc', '0', '-1', '01', '99999999999999999999']) {
      await expect(add({ type: 'test.idle', storeId: 'v', parentId })).rejects.toMatchObject({
        code: 'validation_failed',
        message: 'jobs[0].parentId: must be a job id (a decimal string)',
      })
    }
    const live = await add({ type: 'test.parent', storeId: 'v' })
    await expect(add({ type: 'test.idle', storeId: 'v', parentId: live.id, coalesceKey: 'k' })).rejects.toBeInstanceOf(ValidationError)
    const before = await count()
    const err = await enqueueMany(t.db.kysely, [
      { type: 'test.idle', storeId: 'v', parentId: live.id },
      { type: 'test.idle', storeId: 'v', parentId: '9000000000' },
    ]).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ValidationError)
    expect(err).toMatchObject({ message: expect.stringMatching(/^jobs\[1\]\.parentId: job 9000000000 is not a live job of store v/), details: { index: 1, parentIds: ['9000000000'] } })
    expect(await count()).toBe(before)

    const done = await add({ type: 'test.parent', storeId: 'v' })
    await cancelJob(t.db.kysely, done.id)
    await expect(add({ type: 'test.idle', storeId: 'v', parentId: done.id })).rejects.toMatchObject({ details: { field: 'parentId' } })

    const claimed = await add({ type: 'test.claimed', storeId: 'v' })
    expect(await claimBatch(t.db.kysely, { workerId: 'w', limit: 1, leaseMs: 60_000, types: ['test.claimed'] })).toHaveLength(1)
    expect((await cancelJob(t.db.kysely, claimed.id)).state).toBe('running')
    await expect(add({ type: 'test.idle', storeId: 'v', parentId: claimed.id })).rejects.toMatchObject({ details: { field: 'parentId' } })
    // Of the two parents added since, the cancelled one left `jobs`.
    expect(await count()).toBe(before + 1)
  })

  it('asks a child that a concurrent claim holds to stop once that claim commits', async () => {
    const parent = await add({ type: 'test.parent', storeId: 'c' })
    const child = await add({ type: 'test.race', storeId: 'c', parentId: parent.id })
    const claim = heldTransaction(otherConnection(), (trx) => claimBatch(trx, { workerId: 'w', limit: 1, leaseMs: 60_000, types: ['test.race'] }))
    expect((await claim.started).map((r) => r.id)).toEqual([child.id])

    let settled = false
    const cancelling = cancelJob(t.db.kysely, parent.id).finally(() => (settled = true))
    await waitFor(async () => (await liveRow(parent.id)) === null, { what: 'the parent to be cancelled' })
    // The claim's row lock keeps the child out of every cascade statement so
    // far; a cascade that did not come back for it would have returned by now.
    await sleep(200)
    expect(settled).toBe(false)
    claim.release()
    await claim.done
    expect((await cancelling).state).toBe('cancelled')
    expect(await liveRow(child.id)).toEqual({ state: 'running', cancel_requested: true })
  })

  it('leaves no child waiting or running unasked while claims race the cascade', async () => {
    const parent = await add({ type: 'test.parent', storeId: 'r' })
    await enqueueMany(t.db.kysely, Array.from({ length: 1_000 }, () => ({ type: 'test.swarm', storeId: 'r', parentId: parent.id })))
    let stop = false
    const claimers = Array.from({ length: 3 }, (_, k) => {
      const db = otherConnection()
      return (async () => {
        let n = 0
        while (!stop) n += (await claimBatch(db.kysely, { workerId: `w${k}`, limit: 2, leaseMs: 60_000, types: ['test.swarm'] })).length
        return n
      })()
    })
    await waitFor(async () => (await t.db.pool.query(`select 1 from jobs where type = 'test.swarm' and state = 'running' limit 1`)).rows.length > 0)
    await cancelJob(t.db.kysely, parent.id)
    stop = true
    const claimed = (await Promise.all(claimers)).reduce((a, b) => a + b, 0)
    expect(claimed).toBeGreaterThan(0)
    expect(await unstopped(parent.id)).toBe(0)
    const { rows } = await t.db.pool.query<{ n: number }>(`select count(*)::int as n from job_history where type = 'test.swarm' and state = 'cancelled'`)
    expect(rows[0]!.n + claimed).toBe(1_000)
  })

  it('walks the children by jobs_parent_idx, not by scanning the live table', async () => {
    await enqueueMany(t.db.kysely, Array.from({ length: 5_000 }, (_, i) => ({ type: 'test.bulk', storeId: `bulk-${i % 20}` })))
    const parent = await add({ type: 'test.parent', storeId: 'bulk-1' })
    await enqueueMany(t.db.kysely, Array.from({ length: 3 }, () => ({ type: 'test.idle', storeId: 'bulk-1', parentId: parent.id })))
    await t.db.pool.query('analyze jobs')
    const compiled = cancelChildrenStatement({ parentId: parent.id, storeId: 'bulk-1', limit: 1_000 }).compile(t.db.kysely)
    const { rows } = await t.db.pool.query(`explain (format json) ${compiled.sql}`, [...compiled.parameters])
    const nodes = planNodes(rows[0]['QUERY PLAN'][0].Plan as PlanNode)
    expect(nodes.some((n) => n['Index Name'] === 'jobs_parent_idx')).toBe(true)
    expect(nodes.filter((n) => n['Node Type'] === 'Seq Scan' && n['Relation Name'] === 'jobs')).toEqual([])
  })

  it('waits for a child being enqueued under a running parent, then cancels that child too', async () => {
    const parent = await add({ type: 'test.runner', storeId: 'e' })
    await claimBatch(t.db.kysely, { workerId: 'w', limit: 1, leaseMs: 60_000, types: ['test.runner'] })
    const enqueuing = heldTransaction(otherConnection(), async (trx) => (await enqueue(trx, { type: 'test.idle', storeId: 'e', parentId: parent.id })).job)
    const child = await enqueuing.started

    let settled = false
    const cancelling = cancelJob(t.db.kysely, parent.id).finally(() => (settled = true))
    // Until the enqueue commits, the cancel waits on the parent's row lock.
    await waitFor(
      async () =>
        settled ||
        (await t.db.pool.query(`select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`)).rows.length > 0,
      { what: 'the cancel to wait for the enqueue' },
    )
    enqueuing.release()
    await enqueuing.done
    expect((await cancelling).state).toBe('running')
    expect(await getJob(t.db.kysely, child.id)).toMatchObject({ state: 'cancelled', lastError: { code: 'parent_cancelled' } })
  })
})
