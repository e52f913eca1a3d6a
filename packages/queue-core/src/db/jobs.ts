import { sql } from 'kysely'
import type { Executor } from './database.ts'
import { epochMs, type JobRow } from './rows.ts'
import { HISTORY_COLUMNS, notifyChanges } from './history.ts'
import { preparedMarker } from './prepared.ts'
import { runnableState } from './pauses.ts'

/** One row to insert, already validated and normalised by enqueue. */
export interface NewJobRow {
  readonly type: string
  readonly storeId: string
  readonly userId: string | null
  readonly priority: number
  /** Null: now. */
  readonly runAt: Date | null
  readonly maxAttempts: number | null
  /** JSON text. */
  readonly payload: string
  readonly dedupeKey: string | null
  readonly queue: string
  /** Null: the job type's cost (see insertMany). */
  readonly cost: number | null
  /** Rate-limit key the claim must hold a token of; null for none. */
  readonly rateKey: string | null
  /** Coalesce key (the type coalesces); null for a plain job. */
  readonly coalesceKey: string | null
  /** The parent job's id (a live job of the same store); null for none. */
  readonly parentId: string | null
}

/**
 * What the insert returns of each new row: what the database decided (id,
 * state, times), not what the caller sent. Sending payloads back and parsing
 * them again was half of a bulk enqueue's client-side time (measured).
 * Timestamps come as float8 epoch milliseconds, which parse as plain numbers.
 */
export interface InsertedRow {
  readonly id: string
  readonly store_id: string
  readonly dedupe_key: string | null
  readonly state: 'pending' | 'scheduled' | 'paused'
  readonly run_at_ms: number
  readonly created_at_ms: number
}

/** A parent named by the batch that is not a live job of the row's store: nothing of the batch was written. */
export interface MissingParent {
  readonly storeId: string
  readonly parentId: string
}

/** A store whose live-job cap the batch would pass: nothing of the batch was written. */
export interface RefusedStore {
  readonly storeId: string
  readonly cap: number
  /** Live jobs the store held (counted up to cap + 1). */
  readonly live: number
  /** Jobs of the batch for this store. */
  readonly incoming: number
}

/**
 * Inserts jobs in one statement, charging each store's fair-share clock for
 * the batch and notifying listeners once per kind of work (not per job).
 *
 * Raw SQL because it locks: the stores upsert takes each store's row lock in
 * store-id order (no deadlock between batches), so concurrent enqueues for one
 * store are charged in turn and none is lost. A job's vtime is its store's
 * start tag: max(store clock, global clock) plus the cost of the store's
 * earlier jobs in the batch, divided by the store's weight. A job's cost is
 * the one given at enqueue, else its type's (job_types: the operator's
 * override, else the handler's declared cost), else 1.
 *
 * Rows whose (store, dedupe key) already has a live job, or whose coalesce
 * key already has an open job, are skipped (ON CONFLICT DO NOTHING); the
 * answer holds only inserted rows, in input order.
 * The store is charged for the whole batch before the conflicts are known,
 * so a deduped enqueue still advances its own store's clock by its cost: it
 * only ever delays that store, never another one.
 *
 * Stores with a live-job cap (stores.max_live_jobs) are counted first; if
 * the batch would take any of them past its cap, nothing is written and the
 * answer lists those stores instead. Unless `storesLocked` says the caller
 * holds those stores' rows (lockStores earlier in its transaction), a batch
 * with a capped store writes nothing and lists the stores in `needsLock`:
 * two enqueues counting in their own snapshots could both take the last place.
 *
 * Rows with a parent are written only if every parent named is a live job of
 * the row's store whose cancellation was not requested; else nothing is
 * written and the answer lists the missing parents. The parents are locked
 * FOR KEY SHARE until the caller's transaction ends (this statement's, on a
 * pool): a parent's cancellation deletes its row, or locks it FOR UPDATE
 * before walking its children (cancel-children.ts), so it waits for these
 * children to commit and its cascade sees them. KEY SHARE leaves the
 * parent's heartbeats and progress writes free. Index: the primary key.
 */
export async function insertMany(
  db: Executor,
  rows: ReadonlyArray<NewJobRow>,
  options: { readonly coalescing?: boolean; readonly storesLocked?: boolean } = {},
): Promise<{ inserted: InsertedRow[]; refused: RefusedStore[]; needsLock: string[]; missingParents: MissingParent[] }> {
  // One arbiter index per statement: the dedupe key for plain jobs, the open
  // coalescing job for coalescing ones (untargeted ON CONFLICT checked every
  // unique index for every row: 4% of a bulk enqueue, measured).
  const conflict = options.coalescing
    ? sql.raw(`(store_id, type, coalesce_key) where coalesce_key is not null and state in ('scheduled', 'pending', 'paused')`)
    : sql.raw('(store_id, dedupe_key) where dedupe_key is not null')
  const name = options.coalescing ? 'backroom_insert_coalescing_v2' : 'backroom_insert_v8'
  if (rows.length === 0) return { inserted: [], refused: [], needsLock: [], missingParents: [] }
  const locked = options.storesLocked === true
  const col = <K extends keyof NewJobRow>(k: K) => rows.map((r) => r[k])
  const parentIds = [...new Set(rows.flatMap((r) => (r.parentId === null ? [] : [r.parentId])))]
  const result = await sql<
    InsertedRow & { refused_cap: number | null; refused_live: number | null; refused_incoming: number | null; missing_parent: string | null }
  >`${sql.raw(preparedMarker(name))}
    with input as (
      select t.type, t.store_id, t.user_id, t.priority, t.run_at, t.max_attempts, t.payload, t.dedupe_key, t.queue, t.ord, t.rate_key, t.coalesce_key,
             t.parent_id, coalesce(t.cost, jt.cost, jt.declared_cost, 1)::float8 as cost
      from unnest(
        ${col('type')}::text[], ${col('storeId')}::text[], ${col('userId')}::text[], ${col('priority')}::smallint[],
        ${col('runAt')}::timestamptz[], ${col('maxAttempts')}::int[], ${col('payload')}::jsonb[],
        ${col('dedupeKey')}::text[], ${col('queue')}::text[], ${col('cost')}::float8[], ${col('rateKey')}::text[],
        ${col('coalesceKey')}::text[], ${col('parentId')}::bigint[]
      ) with ordinality as t(type, store_id, user_id, priority, run_at, max_attempts, payload, dedupe_key, queue, cost, rate_key, coalesce_key, parent_id, ord)
      left join job_types jt on jt.type = t.type
    ),
    -- The parents the batch names, by primary key (none for most batches: an
    -- empty array). FOR KEY SHARE: see the function's comment.
    parents as (
      select p.id, p.store_id from jobs p
      where p.id = any(${parentIds}::bigint[]) and not p.cancel_requested
      for key share of p
    ),
    orphans as (
      select distinct i.store_id, i.parent_id from input i
      where i.parent_id is not null
        and not exists (select 1 from parents p where p.id = i.parent_id and p.store_id = i.store_id)
    ),
    totals as (
      select store_id, sum(cost) as total, count(*)::int as n from input group by store_id
    ),
    -- Two counts, each on the partial index that serves it (no index covers all states).
    refused as (
      select s.store_id, s.max_live_jobs as cap, t.n as incoming,
             (select count(*) from (select 1 from jobs j where j.store_id = s.store_id and j.state <> 'running' limit s.max_live_jobs + 1) w)::int
             + (select count(*) from jobs j where j.store_id = s.store_id and j.state = 'running')::int as live
      from stores s join totals t on t.store_id = s.store_id
      where s.max_live_jobs is not null
    ),
    -- Counted in this statement's snapshot, a cap is exact only while the
    -- caller holds the capped stores' rows (lockStores, then a new statement):
    -- without that, write nothing and ask for the lock.
    over as (select * from refused where not ${locked}::boolean or live + incoming > cap),
    -- Nothing is written when a store is over its cap or a parent is missing.
    blocked as (select exists (select 1 from over) or exists (select 1 from orphans) as yes),
    -- A type whose jobs carry rate keys is claimed through the limited claim,
    -- which spends the tokens (marked once; later enqueues change nothing).
    rate_typed as (
      insert into job_types (type, rate_limited)
      select distinct type, true from input where rate_key is not null and not (select yes from blocked)
      order by type
      on conflict (type) do update set rate_limited = true where not job_types.rate_limited
    ),
    charged as (
      insert into stores as s (store_id, vclock)
      select t.store_id, (select vtime from queue_clock) + t.total from totals t
      where not (select yes from blocked)
      order by t.store_id
      on conflict (store_id) do update
        set vclock = greatest(s.vclock, (select vtime from queue_clock))
                     + (select t.total from totals t where t.store_id = excluded.store_id) / s.weight
      returning s.store_id, s.vclock, s.weight
    ),
    ins as (
      insert into jobs (type, store_id, user_id, priority, claim_priority, state, vtime, cost, run_at, max_attempts, payload, dedupe_key, queue, rate_key, coalesce_key, parent_id)
      select i.type, i.store_id, i.user_id, i.priority, i.priority,
             case when i.run_at > now() then 'scheduled' else ${runnableState(sql.ref('i.store_id'), sql.ref('i.type'))} end,
             c.vclock - (t.total - i.before) / c.weight,
             i.cost, coalesce(i.run_at, now()), i.max_attempts, i.payload, i.dedupe_key, i.queue, i.rate_key, i.coalesce_key, i.parent_id
      from (select input.*, sum(cost) over (partition by store_id order by ord) - cost as before from input) i
      join charged c on c.store_id = i.store_id
      join totals t on t.store_id = i.store_id
      order by i.ord
      on conflict ${conflict} do nothing
      returning id, store_id, dedupe_key, state, run_at, created_at
    ),
    moved as (select state from ins),
    ${notifyChanges()}
    select id, store_id, dedupe_key, state,
           ${epochMs(sql.ref('run_at'))} as run_at_ms, ${epochMs(sql.ref('created_at'))} as created_at_ms,
           null::int as refused_cap, null::int as refused_live, null::int as refused_incoming, null::text as missing_parent,
           (select count(*) from notified) as notified
    from ins
    union all
    select null, store_id, null, case when ${locked}::boolean then 'refused' else 'needs_lock' end, null, null, cap, live, incoming, null, 0
    from over
    union all
    select null, store_id, null, 'missing_parent', null, null, null, null, null, parent_id::text, 0
    from orphans
    order by id
  `.execute(db)
  const inserted: InsertedRow[] = []
  const refused: RefusedStore[] = []
  const needsLock: string[] = []
  const missingParents: MissingParent[] = []
  for (const r of result.rows) {
    if (r.missing_parent !== null) missingParents.push({ storeId: r.store_id, parentId: r.missing_parent })
    else if ((r.state as string) === 'needs_lock') needsLock.push(r.store_id)
    else if (r.refused_cap !== null) {
      refused.push({ storeId: r.store_id, cap: r.refused_cap, live: r.refused_live ?? 0, incoming: r.refused_incoming ?? 0 })
    } else inserted.push(r)
  }
  return { inserted, refused, needsLock, missingParents }
}

/**
 * Locks stores' rows (in store-id order, like the insert's own upsert) for
 * the rest of the caller's transaction: enqueues to a capped store then count
 * its live jobs one after another, so the cap is exact.
 */
export async function lockStores(db: Executor, storeIds: ReadonlyArray<string>): Promise<void> {
  await sql`select 1 from stores where store_id = any(${[...storeIds]}::text[]) order by store_id for update`.execute(db)
}

/** Jobs of one store that finished in the last `windowMs` (job_history_store_idx). */
export async function recentlyFinished(db: Executor, args: { storeId: string; windowMs: number }): Promise<number> {
  const result = await sql<{ n: number }>`
    select count(*)::int as n from job_history
    where store_id = ${args.storeId} and finished_at > now() - ${args.windowMs} * interval '1 millisecond'
  `.execute(db)
  return result.rows[0]?.n ?? 0
}

/** Live jobs holding these (store, dedupe key) pairs. */
export async function findByDedupeKeys(
  db: Executor,
  keys: ReadonlyArray<{ readonly storeId: string; readonly dedupeKey: string }>,
): Promise<JobRow[]> {
  if (keys.length === 0) return []
  const result = await sql<JobRow>`
    select j.* from jobs j
    join unnest(${keys.map((k) => k.storeId)}::text[], ${keys.map((k) => k.dedupeKey)}::text[]) as k(store_id, dedupe_key)
      on j.store_id = k.store_id and j.dedupe_key = k.dedupe_key
  `.execute(db)
  return result.rows
}

/**
 * A job by id, live or finished; `storeId` restricts to one store (null: any).
 * One statement, so one snapshot: a job that finishes (or is retried) moves
 * between the tables in one transaction, and two reads could miss it in both.
 * Index: the primary keys of `jobs` and of each history partition.
 */
export async function getById(db: Executor, args: { id: string; storeId: string | null }): Promise<JobRow | undefined> {
  const store = args.storeId === null ? sql`` : sql`and store_id = ${args.storeId}`
  const result = await sql<JobRow>`
    select id, type, queue, store_id, user_id, priority, state, attempt, max_attempts, payload, dedupe_key, progress, errors,
           null::jsonb as result, run_at, created_at, started_at, null::timestamptz as finished_at
    from jobs where id = ${args.id} ${store}
    union all
    select ${HISTORY_COLUMNS} from job_history where id = ${args.id} ${store}
    limit 1
  `.execute(db)
  return result.rows[0]
}
