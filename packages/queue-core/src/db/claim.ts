import { randomUUID } from 'node:crypto'
import { DummyDriver, Kysely, PostgresAdapter, PostgresIntrospector, PostgresQueryCompiler, sql, type RawBuilder } from 'kysely'
import { preparedMarker } from './prepared.ts'
import type { Database, Executor } from './database.ts'
import { epochMs, type ClaimedJobRow } from './rows.ts'
import type { Fence } from '../types.ts'

/** Arguments of {@link claimBatch}. */
export interface ClaimArgs {
  readonly workerId: string
  /** At most this many jobs: the caller's free slots. */
  readonly limit: number
  readonly leaseMs: number
  /** Only these types; null for every type. */
  readonly types: ReadonlyArray<string> | null
}

/**
 * Claims up to `limit` pending jobs in fair order and leases them to `workerId`.
 *
 * Index: jobs_claim_idx (claim_priority, vtime, id) WHERE state = 'pending'. The
 * ORDER BY is exactly the index order, so the plan is Index Scan → Limit →
 * LockRows with no Sort (asserted by claim.test.ts). SKIP LOCKED lets
 * concurrent claimers take disjoint rows without waiting on each other.
 *
 * Every claim spends an attempt and mints a new random lease token; the
 * (id, attempt, token) triple fences every later write of this run. One token
 * serves the whole batch: it only has to differ between two claims of the
 * same job, and gen_random_uuid() per row cost 17 µs a row here (measured),
 * about 40 % of the claim.
 *
 * The global virtual clock moves to the highest vtime claimed, never back,
 * so a store arriving later starts level with the work being served now.
 * The claim takes the clock row with SKIP LOCKED: concurrent claimers never
 * queue behind each other on it.
 */
export async function claimBatch(db: Executor, args: ClaimArgs): Promise<ClaimedJobRow[]> {
  const run = async (trx: Executor) => {
    await useClaimSettings(trx)
    // Without the row that only reports limited types (see claimStatement).
    return (await claimStatement(args).execute(trx)).rows.filter((r) => r.id !== null)
  }
  return db.isTransaction ? run(db) : db.transaction().execute(run)
}

/**
 * Planner and commit settings for the claim, local to its transaction.
 *
 * Planner: before the first ANALYZE of a freshly filled table the planner
 * estimates one matching row and prefers a bitmap or sequential scan plus a
 * sort over the ordered walk of jobs_claim_idx (measured: 6-9 ms instead of
 * well under 1 ms for a 10-job claim behind 20,000 pending rows). Ruling out
 * sorts and non-ordered scans leaves the index walk, which is right at any
 * table size because the LIMIT stops it early. Hash and merge joins go too:
 * after an ANALYZE at a few thousand pending rows the planner joined the
 * picked ids back with a full primary-key scan (2.3 ms of a 5.9 ms claim)
 * instead of one lookup per picked row. JIT goes too: the disabled
 * paths' huge nominal costs would otherwise trigger a 0.5 s JIT compile.
 *
 * Commit: a claim need not survive a server crash. Losing one only means the
 * job runs again (at-least-once), and the next synchronous commit (the
 * completion) flushes the WAL past it anyway; so the claim skips the flush wait.
 */
export async function useClaimSettings(trx: Executor): Promise<void> {
  const settings = CLAIM_SETTINGS.map(([name, value]) => sql`set_config(${name}, ${value}, true)`)
  await sql`select ${sql.join(settings)}`.execute(trx)
}

/** The claim's settings (see {@link useClaimSettings}), one list for both ways of applying them. */
export const CLAIM_SETTINGS: ReadonlyArray<readonly [string, string]> = [
  ['enable_sort', 'off'],
  ['enable_bitmapscan', 'off'],
  ['enable_seqscan', 'off'],
  ['enable_hashjoin', 'off'],
  ['enable_mergejoin', 'off'],
  ['jit', 'off'],
  ['synchronous_commit', 'off'],
]

/**
 * Claims on a claim session: a connection whose session already carries
 * {@link CLAIM_SETTINGS} (see `connectClaimSession`), so the claim is one
 * statement with no transaction block: one round trip instead of four
 * (measured: about 2.2 ms down to about 1 ms on an idle worker's pick-up).
 *
 * The statement is prepared once per connection (see prepared.ts) and its
 * plan reused: planning the claim's CTEs took about 0.7 ms, as long as
 * executing a small claim, on every pick-up.
 */
export async function claimBatchOnSession(session: Executor, args: ClaimArgs): Promise<{ rows: ClaimedJobRow[]; limitedTypes: boolean }> {
  const all = (await claimStatement(args).execute(session)).rows
  const rows = all.filter((r) => r.id !== null)
  return { rows, limitedTypes: rows.length < all.length }
}

/**
 * The claim statement itself, unexecuted: tests EXPLAIN exactly what runs
 * (after {@link useClaimSettings}).
 *
 * It never takes a job of a type under a concurrency limit (job_types,
 * store_type_limits) or with rate keys: those are claimed by
 * claimLimitedStatement, under the type's lock. The list is read by the
 * statement itself (an init plan, once per claim), so a limit set a moment
 * ago already keeps this path off its type; and when any of the worker's
 * types is limited, the claim says so (an extra row without a job), so the
 * worker switches paths without polling for limits on every claim.
 */
export function claimStatement(args: ClaimArgs): RawBuilder<ClaimedJobRow> {
  const types = args.types === null ? null : [...args.types]
  return sql<ClaimedJobRow>`${sql.raw(preparedMarker('backroom_claim_v5'))}
    with limited as (select ${LIMITED_TYPES} as types),
    picked as (
      select id from jobs
      where state = 'pending'
        and (${types}::text[] is null or type = any(${types}::text[]))
        and type <> all((select types from limited)::text[])
      order by claim_priority, vtime, id
      limit ${args.limit}
      for update skip locked
    ),
    ${claimPicked(args, {
      retryHint: sql<number | null>`(select 0::float8 from limited l
        where cardinality(l.types) > 0 and (${types}::text[] is null or l.types && ${types}::text[]))`,
    })}
  `
}

/**
 * Every job type under some concurrency limit, as a text[] (an uncorrelated
 * subquery; the cast makes `= any(...)` take it as one array, not as rows).
 */
export const LIMITED_TYPES: RawBuilder<string[]> = sql<string[]>`(
  select coalesce(array_agg(type), '{}') from (
    select type from job_types where max_running is not null or max_running_per_store is not null or rate_limited
    union
    select type from store_type_limits
  ) limited
)::text[]`

/**
 * The end of every claim statement: leases the rows of its `picked` CTE (a
 * column `id`, already locked) to the worker, moves the global virtual clock
 * and returns the claimed rows.
 */
export function claimPicked(args: ClaimArgs, options: { retryHint?: RawBuilder<number | null> } = {}): RawBuilder<ClaimedJobRow> {
  const columns = sql.raw(CLAIMED_COLUMNS.join(', '))
  // A claim cut short by a rate limit says when to try again, as one extra
  // row with no job (id null): nothing else would wake the worker when the
  // bucket refills.
  const hint = options.retryHint
    ? sql`union all select ${sql.raw(CLAIMED_COLUMNS.map(() => 'null').join(', '))}, ${options.retryHint} where ${options.retryHint} is not null`
    : sql``
  return sql<ClaimedJobRow>`
    claimed as (
      update jobs j
      set state        = 'running',
          attempt      = j.attempt + 1,
          locked_by    = ${args.workerId},
          locked_until = now() + ${args.leaseMs} * interval '1 millisecond',
          lease_token  = ${randomUUID()}::uuid,
          started_at   = now()
      from picked
      where j.id = picked.id
      returning j.id, j.type, j.queue, j.store_id, j.user_id, j.priority, j.state, j.attempt, j.max_attempts,
                j.payload, j.dedupe_key, j.progress, j.errors, j.lease_token, j.locked_by, j.cancel_requested, j.vtime,
                ${epochMs(sql.ref('j.run_at'))} as run_at_ms, ${epochMs(sql.ref('j.created_at'))} as created_at_ms,
                ${epochMs(sql.ref('j.started_at'))} as started_at_ms, ${epochMs(sql.ref('j.locked_until'))} as locked_until_ms
    ),
    -- Never wait for the clock row: if another claim holds it, that claim
    -- moves the clock forward itself, and a clock a few jobs behind is harmless.
    -- Waiting would serialise every claimer on one row for a round trip.
    advance as (
      update queue_clock c
      set vtime = m.top
      from (select max(vtime) as top from claimed) m
      where m.top > c.vtime
        and c.id = (select id from queue_clock for update skip locked)
    )
    select ${columns}, null::float8 as retry_in_ms from claimed
    ${hint}
  `
}

/** The columns every claim returns (ClaimedJobRow), in order. */
const CLAIMED_COLUMNS = [
  'id', 'type', 'queue', 'store_id', 'user_id', 'priority', 'state', 'attempt', 'max_attempts', 'payload', 'dedupe_key', 'progress',
  'errors', 'lease_token', 'locked_by', 'cancel_requested', 'run_at_ms', 'created_at_ms', 'started_at_ms', 'locked_until_ms',
]

/** A running job whose lease is still held, after an extension. */
export interface HeldLease {
  readonly id: string
  readonly cancelRequested: boolean
}

/**
 * Extends the leases of the given attempts in one statement; returns those
 * still held (a missing id means the lease was lost). A heartbeat only
 * touches unindexed columns, so it is a HOT update.
 */
export async function extendLeases(
  db: Executor,
  args: { readonly fences: ReadonlyArray<Fence>; readonly leaseMs: number },
): Promise<HeldLease[]> {
  if (args.fences.length === 0) return []
  const { ids, attempts, tokens } = fenceArrays(args.fences)
  const result = await extendLeasesQuery({ leaseMs: args.leaseMs, ids, attempts, tokens }).execute(db)
  return result.rows.map((r) => ({ id: String(r.id), cancelRequested: r.cancel_requested }))
}

/** The heartbeat statement; index: the primary key (ids from the fences), the fence columns checked on the row. */
function extendLeasesQuery(args: { leaseMs: unknown; ids: unknown; attempts: unknown; tokens: unknown }) {
  return sql<{ id: string; cancel_requested: boolean }>`
    update jobs j
    set locked_until = now() + ${args.leaseMs} * interval '1 millisecond'
    from unnest(${args.ids}::bigint[], ${args.attempts}::int[], ${args.tokens}::uuid[]) as f(id, attempt, token)
    where j.id = f.id and j.attempt = f.attempt and j.lease_token = f.token and j.state = 'running'
    returning j.id, j.cancel_requested
  `
}

/**
 * The heartbeat statement as text, for a client that runs it without this
 * module (the watchdog thread, which loads nothing but `pg`): the SQL and the
 * order of its parameters, named.
 */
export function extendLeasesText(): { readonly sql: string; readonly parameters: ReadonlyArray<'leaseMs' | 'ids' | 'attempts' | 'tokens'> } {
  const compiled = extendLeasesQuery({ leaseMs: 'leaseMs', ids: 'ids', attempts: 'attempts', tokens: 'tokens' }).compile(compileOnly)
  return { sql: compiled.sql, parameters: compiled.parameters as ReadonlyArray<'leaseMs' | 'ids' | 'attempts' | 'tokens'> }
}

/** A Kysely that compiles PostgreSQL statements and never connects (kysely's DummyDriver). */
const compileOnly = new Kysely<Database>({
  dialect: {
    createAdapter: () => new PostgresAdapter(),
    createDriver: () => new DummyDriver(),
    createIntrospector: (db) => new PostgresIntrospector(db),
    createQueryCompiler: () => new PostgresQueryCompiler(),
  },
})

/** Splits fences into the parallel arrays `unnest` takes. */
export function fenceArrays(fences: ReadonlyArray<Fence>): { ids: string[]; attempts: number[]; tokens: string[] } {
  return {
    ids: fences.map((f) => f.id),
    attempts: fences.map((f) => f.attempt),
    tokens: fences.map((f) => f.leaseToken),
  }
}

/** Records a running job's progress (any JSON). Fenced; returns false when the lease was lost. */
export async function setProgress(db: Executor, args: { fence: Fence; progress: string }): Promise<boolean> {
  const { fence } = args
  const result = await sql`
    update jobs set progress = ${args.progress}::jsonb
    where id = ${fence.id} and attempt = ${fence.attempt} and lease_token = ${fence.leaseToken}::uuid and state = 'running'
  `.execute(db)
  return Number(result.numAffectedRows ?? 0) === 1
}

/** Thrown inside explainClaim's transaction to roll it back after EXPLAIN ANALYZE. */
class RollbackExplain extends Error {
  constructor(readonly plan: string) {
    super('rollback after explain')
  }
}

/**
 * EXPLAIN (ANALYZE, BUFFERS) of one real claim with the claim's settings,
 * rolled back so no job changes state: for benchmarks and for checking a
 * production plan. Returns the execution time and the plan text.
 */
export async function explainClaim(db: Kysely<Database>, args: ClaimArgs): Promise<{ ms: number; plan: string }> {
  try {
    await db.transaction().execute(async (trx) => {
      await useClaimSettings(trx)
      const result = await sql<{ 'QUERY PLAN': string }>`explain (analyze, buffers, format text) ${claimStatement(args)}`.execute(trx)
      throw new RollbackExplain(result.rows.map((r) => r['QUERY PLAN']).join('\n'))
    })
  } catch (err) {
    if (!(err instanceof RollbackExplain)) throw err
    const ms = /Execution Time: ([\d.]+) ms/.exec(err.plan)?.[1]
    if (ms === undefined) throw new Error('no execution time in the claim plan')
    return { ms: Number(ms), plan: err.plan }
  }
  throw new Error('unreachable: the explain transaction always rolls back')
}
