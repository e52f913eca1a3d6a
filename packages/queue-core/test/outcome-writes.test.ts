import { Writable } from 'node:stream'
import { pino } from 'pino'
import { Type } from 'typebox'
import { afterEach, describe, expect, it } from 'vitest'
import { claimBatch } from '../src/db/claim.ts'
import { enqueue, enqueueMany } from '../src/enqueue.ts'
import { defineHandler } from '../src/handler.ts'
import { waitFor } from '../src/testing/fixtures.ts'
import { useTestDatabase } from '../src/testing/use-test-database.ts'
import type { FinishItem } from '../src/db/history.ts'
import { createCompleter } from '../src/worker/completer.ts'
import { createWorkerPool, type WorkerPool } from '../src/worker/worker-pool.ts'
import type { Fence } from '../src/types.ts'

const t = useTestDatabase()
let pools: WorkerPool[] = []
afterEach(async () => {
  await Promise.all(pools.map((p) => p.stop()))
  pools = []
})

/** A pino logger whose JSON lines land in `lines`. */
function capturingLogger(): { log: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>)
      done()
    },
  })
  return { log: pino({ level: 'debug' }, sink), lines }
}

interface HistoryRow {
  id: string
  state: string
  attempt: number
  store_id: string
  result: unknown
  errors: Array<{ attempt: number; code: string; message: string }>
}

async function historyOf(ids: ReadonlyArray<string>): Promise<HistoryRow[]> {
  const { rows } = await t.db.pool.query<HistoryRow>(
    'select id::text, state, attempt, store_id, result, errors from job_history where id = any($1::bigint[]) order by id',
    [ids],
  )
  return rows
}

const NUL = '\u0000'
const LONE_HIGH = '\ud800'
const LONE_LOW = '\udc00'
const REPLACED = '\ufffd'

describe('outcomes holding text PostgreSQL cannot store', () => {
  it('are stored with the bad characters replaced, in the same completion batch as other stores’ jobs, which each complete exactly once', async () => {
    const GOOD = 60
    const runs = new Map<string, number>()
    let started = 0
    let release!: () => void
    const gate = new Promise<void>((r) => {
      release = r
    })
    const TOTAL = GOOD + 4
    const h = defineHandler({
      type: 'test.outcome',
      payload: Type.Object({ kind: Type.String() }),
      maxAttempts: 1,
      async run(p, { job }) {
        runs.set(job.id, (runs.get(job.id) ?? 0) + 1)
        // Every job ends at the same moment, so their outcomes share one completion statement.
        if (++started === TOTAL) release()
        await gate
        if (p.kind === 'nul') return { text: `a${NUL}b`, [`key${NUL}`]: 1 }
        if (p.kind === 'surrogate') return { text: `a${LONE_HIGH}b${LONE_LOW}`, pair: '😀' }
        if (p.kind === 'throws') throw new Error(`bad ${NUL} and ${LONE_LOW} text`)
        if (p.kind === 'retries') {
          if (job.attempt === 1) throw Object.assign(new Error(`flaky ${LONE_HIGH}${NUL}`), { code: `code${NUL}` })
          return { retried: true }
        }
        return { ok: job.id }
      },
    })
    const specs = [
      ...Array.from({ length: GOOD }, (_, i) => ({ type: 'test.outcome', storeId: `store-${i % 6}`, payload: { kind: 'good' } })),
      { type: 'test.outcome', storeId: 'store-bad', payload: { kind: 'nul' } },
      { type: 'test.outcome', storeId: 'store-bad', payload: { kind: 'surrogate' } },
      { type: 'test.outcome', storeId: 'store-bad', payload: { kind: 'throws' } },
      { type: 'test.outcome', storeId: 'store-bad', payload: { kind: 'retries' }, maxAttempts: 2 },
    ]
    const jobs = (await enqueueMany(t.db.kysely, specs)).map((r) => r.job)
    const pool = createWorkerPool({
      db: t.db.kysely,
      connectionString: t.url,
      handlers: [h],
      concurrency: TOTAL,
      completerDelayMs: 100,
      pollIntervalMs: 100,
      // The promoter brings the retried job back when its backoff is over.
      maintenanceIntervals: { promoteMs: 50, electionMs: 100 },
    })
    pools.push(pool)
    await pool.start()
    const ids = jobs.map((j) => j.id)
    const history = await waitFor(
      async () => {
        const rows = await historyOf(ids)
        return rows.length === ids.length ? rows : null
      },
      { timeoutMs: 15_000, what: 'every job to finish' },
    )
    const byId = new Map(history.map((r) => [r.id, r]))
    const [nul, surrogate, throws, retries] = jobs.slice(GOOD).map((j) => byId.get(j.id) as HistoryRow)
    for (const job of jobs.slice(0, GOOD)) {
      expect(byId.get(job.id), `job ${job.id}`).toMatchObject({ state: 'completed', attempt: 1, result: { ok: job.id }, errors: [] })
      expect(runs.get(job.id), `runs of job ${job.id}`).toBe(1)
    }
    expect(nul).toMatchObject({ state: 'completed', attempt: 1, result: { text: `a${REPLACED}b`, [`key${REPLACED}`]: 1 } })
    expect(surrogate).toMatchObject({ state: 'completed', attempt: 1, result: { text: `a${REPLACED}b${REPLACED}`, pair: '😀' } })
    expect(throws).toMatchObject({ state: 'failed', attempt: 1, result: null })
    expect(throws?.errors).toEqual([expect.objectContaining({ attempt: 1, code: 'error', message: `bad ${REPLACED} and ${REPLACED} text` })])
    expect(retries).toMatchObject({ state: 'completed', attempt: 2, result: { retried: true } })
    expect(retries?.errors).toEqual([expect.objectContaining({ attempt: 1, code: `code${REPLACED}`, message: `flaky ${REPLACED}${REPLACED}` })])
    for (const job of jobs.slice(GOOD, GOOD + 3)) expect(runs.get(job.id), `runs of job ${job.id}`).toBe(1)
    expect(runs.get(retries!.id)).toBe(2)
  })

  it('records progress with the bad characters replaced', async () => {
    const h = defineHandler({
      type: 'test.progress-text',
      payload: Type.Object({}),
      async run(_p, { progress }) {
        await progress({ step: `one${NUL}`, note: LONE_LOW })
      },
    })
    const { job } = await enqueue(t.db.kysely, { type: 'test.progress-text', storeId: 'store-p' })
    const pool = createWorkerPool({ db: t.db.kysely, connectionString: t.url, handlers: [h], maintenance: false, pollIntervalMs: 100 })
    pools.push(pool)
    await pool.start()
    const row = await waitFor(async () => (await t.db.pool.query('select state, progress from job_history where id = $1', [job.id])).rows[0])
    expect(row).toEqual({ state: 'completed', progress: { step: `one${REPLACED}`, note: REPLACED } })
  })
})

describe('createCompleter', () => {
  it('writes every other outcome of a batch when one item still fails with a data error, and records the bad one without its text', async () => {
    const GOOD = 40
    const jobs = (
      await enqueueMany(
        t.db.kysely,
        Array.from({ length: GOOD + 2 }, (_, i) => ({ type: 'test.completer', storeId: `store-${i % 5}` })),
      )
    ).map((r) => r.job)
    const rows = await claimBatch(t.db.kysely, { workerId: 'w-completer', limit: GOOD + 2, leaseMs: 60_000, types: ['test.completer'] })
    expect(rows).toHaveLength(GOOD + 2)
    const fences = new Map<string, Fence>(rows.map((r) => [String(r.id), { id: String(r.id), attempt: r.attempt, leaseToken: r.lease_token }]))
    const fenceOf = (id: string) => fences.get(id) as Fence
    const { log, lines } = capturingLogger()
    // One flush for everything: the batch limit is above the item count and the delay is long.
    const completer = createCompleter({ db: t.db.kysely, batch: 500, delayMs: 200, log })
    const at = new Date().toISOString()
    // Text as it would reach the statement from a caller that does not clean it.
    const items: FinishItem[] = [
      ...jobs.slice(0, GOOD).map((j) => ({ fence: fenceOf(j.id), state: 'completed' as const, result: JSON.stringify({ n: j.id }), error: null })),
      { fence: fenceOf(jobs[GOOD]!.id), state: 'completed', result: '{"text":"a\\u0000b"}', error: null },
      { fence: fenceOf(jobs[GOOD + 1]!.id), state: 'failed', result: null, error: { attempt: 1, at, code: 'boom', message: `x${LONE_LOW}` } },
    ]
    const forever = () => Number.POSITIVE_INFINITY
    const written = await Promise.all(items.map((item) => completer.push(item, { writableUntil: forever })))
    expect(written).toEqual(items.map(() => true))
    const history = new Map((await historyOf(jobs.map((j) => j.id))).map((r) => [r.id, r]))
    expect(history.size).toBe(GOOD + 2)
    for (const j of jobs.slice(0, GOOD)) expect(history.get(j.id)).toMatchObject({ state: 'completed', result: { n: j.id }, errors: [] })
    expect(history.get(jobs[GOOD]!.id)).toMatchObject({ state: 'completed', result: null, errors: [] })
    expect(history.get(jobs[GOOD + 1]!.id)).toMatchObject({ state: 'failed', result: null })
    expect(history.get(jobs[GOOD + 1]!.id)?.errors).toEqual([expect.objectContaining({ attempt: 1, code: 'unstorable_outcome' })])
    const unstorable = lines.filter((l) => l.msg === 'outcome not storable; recorded without its text')
    expect(unstorable.map((l) => l.jobId).sort()).toEqual([jobs[GOOD]!.id, jobs[GOOD + 1]!.id].sort())
    // The statement's text (the outcome itself) never reaches the log.
    expect(JSON.stringify(lines)).not.toContain('a\\\\u0000b')
    expect(await t.db.pool.query('select count(*)::int as n from jobs where type = $1', ['test.completer'])).toMatchObject({ rows: [{ n: 0 }] })
  })
})
