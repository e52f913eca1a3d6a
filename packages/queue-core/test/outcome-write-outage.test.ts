import { setTimeout as sleep } from 'node:timers/promises'
import { Writable } from 'node:stream'
import pg from 'pg'
import { pino } from 'pino'
import { Type } from 'typebox'
import { afterEach, describe, expect, it } from 'vitest'
import { connect, type Db } from '../src/db/connect.ts'
import { enqueue } from '../src/enqueue.ts'
import { snooze } from '../src/errors.ts'
import { defineHandler, type Handler } from '../src/handler.ts'
import { waitFor } from '../src/testing/fixtures.ts'
import { useTestDatabase } from '../src/testing/use-test-database.ts'
import { createWorkerPool, type WorkerPool } from '../src/worker/worker-pool.ts'

const t = useTestDatabase()

/** Long enough for the outage to end well inside it; the heartbeat runs every third of it. */
const LEASE_MS = 5_000
/** How long the database refuses the worker: longer than any single write's retry pause. */
const OUTAGE_MS = 1_500

let pool: WorkerPool | null = null
let workerDb: Db | null = null
afterEach(async () => {
  await pool?.stop()
  await workerDb?.close()
  pool = null
  workerDb = null
})

/**
 * A real outage of the test database: new connections are refused
 * (ALLOW_CONNECTIONS false) and every open one is terminated, from a
 * session on the server's maintenance database. It ends by itself after
 * OUTAGE_MS. Resolves once every backend of the database has exited.
 */
async function startOutage(): Promise<{ ended: Promise<void> }> {
  const name = new URL(t.url).pathname.slice(1)
  const admin = new pg.Client({ connectionString: t.serverUrl })
  await admin.connect()
  await admin.query(`alter database "${name}" allow_connections false`)
  // The second argument waits for each backend to exit.
  await admin.query('select pg_terminate_backend(pid, 5000) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [name])
  // Wrapped: an async function returning the promise itself would wait for it.
  const ended = (async () => {
    try {
      await sleep(OUTAGE_MS)
      await admin.query(`alter database "${name}" allow_connections true`)
    } finally {
      await admin.end()
    }
  })()
  return { ended }
}

/** A pool on its own connections, with a logger whose lines land in `lines`. */
async function startPool(h: Handler): Promise<Array<Record<string, unknown>>> {
  const lines: Array<Record<string, unknown>> = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>)
      done()
    },
  })
  workerDb = connect({ connectionString: t.url, max: 4, applicationName: 'outage-worker' })
  pool = createWorkerPool({
    db: workerDb.kysely,
    connectionString: t.url,
    handlers: [h],
    concurrency: 2,
    leaseMs: LEASE_MS,
    pollIntervalMs: 100,
    // The rescuer runs often, so a job left running after the outage is visible well within the test.
    maintenanceIntervals: { rescueMs: 200, electionMs: 200, promoteMs: 100 },
    log: pino({ level: 'warn' }, sink),
  })
  await pool.start()
  return lines
}

/** The job's history rows, polled through a fresh connection each time (the outage kills pooled ones). */
async function finished(id: string): Promise<Array<{ state: string; attempt: number; result: unknown; errors: Array<{ attempt: number; code: string; message: string }> }>> {
  const c = new pg.Client({ connectionString: t.url })
  try {
    await c.connect()
    const { rows: live } = await c.query('select 1 from jobs where id = $1', [id])
    if (live.length > 0) return []
    return (await c.query('select state, attempt, result, errors from job_history where id = $1', [id])).rows
  } catch {
    return []
  } finally {
    await c.end().catch(() => {})
  }
}

describe('outcome writes during a short database outage', () => {
  it('complete a job that succeeded exactly once: the completion is retried until the database is back', { timeout: 30_000 }, async () => {
    let runs = 0
    let outage = null as { ended: Promise<void> } | null
    const h = defineHandler({
      type: 'test.outage-complete',
      payload: Type.Object({}),
      maxAttempts: 1,
      async run() {
        runs++
        outage = await startOutage()
        return { done: true }
      },
    })
    const lines = await startPool(h)
    const { job } = await enqueue(t.db.kysely, { type: 'test.outage-complete', storeId: 'store-o' })
    const rows = await waitFor(async () => {
      const r = await finished(job.id)
      return r.length > 0 ? r : null
    }, { timeoutMs: 20_000, what: 'the job to finish' })
    await outage?.ended
    expect(rows).toEqual([{ state: 'completed', attempt: 1, result: { done: true }, errors: [] }])
    expect(runs).toBe(1)
    expect(lines.some((l) => l.msg === "outcome write failed; retrying"), JSON.stringify(lines, null, 1)).toBe(true)
  })

  it('records a failed attempt’s retry once the database is back, so the next attempt sees its error and not a lost lease', { timeout: 30_000 }, async () => {
    let runs = 0
    let outage = null as { ended: Promise<void> } | null
    const h = defineHandler({
      type: 'test.outage-retry',
      payload: Type.Object({}),
      maxAttempts: 2,
      async run(_p, { job }) {
        runs++
        if (job.attempt > 1) return 'second'
        outage = await startOutage()
        throw new Error('first attempt failed')
      },
    })
    const lines = await startPool(h)
    const { job } = await enqueue(t.db.kysely, { type: 'test.outage-retry', storeId: 'store-o' })
    const rows = await waitFor(async () => {
      const r = await finished(job.id)
      return r.length > 0 ? r : null
    }, { timeoutMs: 20_000, what: 'the job to finish' })
    await outage?.ended
    expect(rows).toEqual([
      { state: 'completed', attempt: 2, result: 'second', errors: [expect.objectContaining({ attempt: 1, code: 'error', message: 'first attempt failed' })] },
    ])
    expect(runs).toBe(2)
    expect(lines.some((l) => l.msg === "outcome write failed; retrying"), JSON.stringify(lines, null, 1)).toBe(true)
  })

  it('puts a snoozed job back without spending its attempt once the database is back', { timeout: 30_000 }, async () => {
    let runs = 0
    let outage = null as { ended: Promise<void> } | null
    const h = defineHandler({
      type: 'test.outage-snooze',
      payload: Type.Object({}),
      maxAttempts: 1,
      async run() {
        runs++
        if (runs > 1) return 'woke'
        outage = await startOutage()
        throw snooze(50)
      },
    })
    const lines = await startPool(h)
    const { job } = await enqueue(t.db.kysely, { type: 'test.outage-snooze', storeId: 'store-o' })
    const rows = await waitFor(async () => {
      const r = await finished(job.id)
      return r.length > 0 ? r : null
    }, { timeoutMs: 20_000, what: 'the job to finish' })
    await outage?.ended
    expect(rows).toEqual([{ state: 'completed', attempt: 1, result: 'woke', errors: [] }])
    expect(runs).toBe(2)
    expect(lines.some((l) => l.msg === "outcome write failed; retrying"), JSON.stringify(lines, null, 1)).toBe(true)
  })
})
