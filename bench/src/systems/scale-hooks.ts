// Shared machinery behind the adapters' optional scale hooks (`fillFinished`,
// `explainFetch` in system.ts):
//
// * Statement capture. Each queue builds its fetch/claim SQL in code the bench
//   cannot (Backroom's claim.ts is not exported) or should not (a library's
//   internal SQL builders) import. So the adapters run the system's own fetch once
//   on an instrumented pool, against a job type or queue that has no jobs, and
//   record the exact text and parameters it sends. What is EXPLAINed is then byte
//   for byte what the system runs, and follows it when its code changes, instead
//   of a hand-kept copy that drifts.
// * EXPLAIN (ANALYZE, BUFFERS) of a captured statement inside a transaction that
//   is always rolled back, so measuring a claim claims nothing.
// * Batched bulk fills with progress lines.
import type pg from 'pg'
import { progress } from '../progress.ts'

/** One statement as a client library sent it: text and bind parameters. */
export interface CapturedQuery {
  readonly text: string
  readonly values: ReadonlyArray<unknown>
}

/** A fetch/claim to EXPLAIN: statements its transaction runs first (settings), then the statement itself. */
export interface CapturedFetch {
  readonly setup: ReadonlyArray<CapturedQuery>
  readonly statement: CapturedQuery
}

/** What `explainFetch()` returns. */
export interface ExplainResult {
  /** The plan's "Execution Time", ms. */
  readonly ms: number
  /** The whole EXPLAIN (ANALYZE, BUFFERS) output. */
  readonly plan: string
}

type QueryFn = (...args: unknown[]) => unknown

/**
 * Records every statement sent on the connections `pool` opens from now on,
 * in order. Call it before the pool's first query: clients opened earlier are
 * not instrumented. Covers both call shapes in use: `query(text, values)`
 * (Kysely, pg-boss) and `query({ text, values, name })` (graphile-worker).
 */
export function recordQueries(pool: pg.Pool): CapturedQuery[] {
  const seen: CapturedQuery[] = []
  pool.on('connect', (client) => {
    const target = client as unknown as { query: QueryFn }
    const original = target.query.bind(client) as QueryFn
    target.query = (...args: unknown[]) => {
      const [first, second] = args
      if (typeof first === 'string') {
        seen.push({ text: first, values: Array.isArray(second) ? [...(second as unknown[])] : [] })
      } else if (first !== null && typeof first === 'object' && typeof (first as { text?: unknown }).text === 'string') {
        const config = first as { text: string; values?: unknown[] }
        seen.push({ text: config.text, values: [...(config.values ?? [])] })
      }
      return original(...args)
    }
  })
  return seen
}

/** Resolves once `found()` returns a value; fails after `timeoutMs` with `what` in the message. */
export async function waitFor<T>(found: () => T | null, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = found()
    if (value !== null) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** Structural equality for bind parameters (strings, numbers, arrays of them). */
export function sameValue(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => sameValue(x, b[i]))
  return a === b
}

/** `query` with every parameter equal to `from` replaced by `to` (e.g. the probe's job type by the bench's). */
export function withValue(query: CapturedQuery, from: unknown, to: unknown): CapturedQuery {
  return { text: query.text, values: query.values.map((v) => (sameValue(v, from) ? to : v)) }
}

/**
 * EXPLAIN (ANALYZE, BUFFERS) of `fetch.statement` after `fetch.setup`, in one
 * transaction that is rolled back whatever happens: the statement really runs
 * (locks, updates, index walk) but leaves nothing behind except the dead row
 * versions every aborted update leaves.
 */
export async function explainAnalyze(pool: pg.Pool, fetch: CapturedFetch): Promise<ExplainResult> {
  const client = await pool.connect()
  let broken: Error | undefined
  try {
    await client.query('begin')
    for (const s of fetch.setup) await client.query(s.text, [...s.values])
    const { rows } = await client.query<{ 'QUERY PLAN': string }>(
      `explain (analyze, buffers, format text) ${fetch.statement.text}`,
      [...fetch.statement.values],
    )
    const plan = rows.map((r) => r['QUERY PLAN']).join('\n')
    const ms = /Execution Time: ([\d.]+) ms/.exec(plan)?.[1]
    if (ms === undefined) throw new Error(`no Execution Time in plan:\n${plan}`)
    return { ms: Number(ms), plan }
  } finally {
    try {
      await client.query('rollback')
    } catch (error) {
      // A connection that cannot roll back must not go back to the pool mid-transaction.
      broken = error as Error
    }
    client.release(broken)
  }
}

/** Largest statement a fill sends: one generate_series batch (the brief's ≤ 1M). */
export const FILL_BATCH = 1_000_000

/**
 * Calls `insert(from, to)` (inclusive, 1-based) over 1..n in batches of at
 * most `batch`, with a progress line per batch.
 */
export async function fillInBatches(
  label: string,
  n: number,
  insert: (from: number, to: number) => Promise<void>,
  batch = FILL_BATCH,
): Promise<void> {
  const t0 = performance.now()
  for (let from = 1; from <= n; from += batch) {
    const to = Math.min(n, from + batch - 1)
    await insert(from, to)
    const rate = Math.round(to / ((performance.now() - t0) / 1000))
    progress(`${label}: filled ${to.toLocaleString('en-US')}/${n.toLocaleString('en-US')} finished jobs (${rate.toLocaleString('en-US')} rows/s)`)
  }
}
