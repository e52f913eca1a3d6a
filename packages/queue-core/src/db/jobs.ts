import { sql } from 'kysely'
import type { Executor } from './database.ts'
import type { JobRow } from './rows.ts'
import { notifyChanges } from './history.ts'
import { preparedMarker } from './prepared.ts'

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
  readonly cost: number
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
  readonly state: 'pending' | 'scheduled'
  readonly run_at_ms: number
  readonly created_at_ms: number
}

/**
 * Inserts jobs in one statement, charging each store's fair-share clock for
 * the batch and notifying listeners once per kind of work (not per job).
 *
 * Raw SQL because it locks: the stores upsert takes each store's row lock in
 * store-id order (no deadlock between batches), so concurrent enqueues for one
 * store are charged in turn and none is lost. A job's vtime is its store's
 * start tag: max(store clock, global clock) plus the cost of the store's
 * earlier jobs in the batch, divided by the store's weight.
 *
 * Rows whose (store, dedupe key) already has a live job are skipped (ON
 * CONFLICT DO NOTHING); the answer holds only inserted rows, in input order.
 * The store is charged for the whole batch before the conflicts are known,
 * so a deduped enqueue still advances its own store's clock by its cost: it
 * only ever delays that store, never another one.
 */
export async function insertMany(db: Executor, rows: ReadonlyArray<NewJobRow>): Promise<InsertedRow[]> {
  if (rows.length === 0) return []
  const col = <K extends keyof NewJobRow>(k: K) => rows.map((r) => r[k])
  const result = await sql<InsertedRow>`${sql.raw(preparedMarker('backroom_insert_v1'))}
    with input as (
      select * from unnest(
        ${col('type')}::text[], ${col('storeId')}::text[], ${col('userId')}::text[], ${col('priority')}::smallint[],
        ${col('runAt')}::timestamptz[], ${col('maxAttempts')}::int[], ${col('payload')}::jsonb[],
        ${col('dedupeKey')}::text[], ${col('queue')}::text[], ${col('cost')}::float8[]
      ) with ordinality as t(type, store_id, user_id, priority, run_at, max_attempts, payload, dedupe_key, queue, cost, ord)
    ),
    totals as (
      select store_id, sum(cost) as total from input group by store_id
    ),
    charged as (
      insert into stores as s (store_id, vclock)
      select t.store_id, (select vtime from queue_clock) + t.total from totals t order by t.store_id
      on conflict (store_id) do update
        set vclock = greatest(s.vclock, (select vtime from queue_clock))
                     + (select t.total from totals t where t.store_id = excluded.store_id) / s.weight
      returning s.store_id, s.vclock, s.weight
    ),
    ins as (
      insert into jobs (type, store_id, user_id, priority, state, vtime, cost, run_at, max_attempts, payload, dedupe_key, queue)
      select i.type, i.store_id, i.user_id, i.priority,
             case when i.run_at > now() then 'scheduled' else 'pending' end,
             c.vclock - (t.total - i.before) / c.weight,
             i.cost, coalesce(i.run_at, now()), i.max_attempts, i.payload, i.dedupe_key, i.queue
      from (select input.*, sum(cost) over (partition by store_id order by ord) - cost as before from input) i
      join charged c on c.store_id = i.store_id
      join totals t on t.store_id = i.store_id
      order by i.ord
      on conflict (store_id, dedupe_key) where dedupe_key is not null do nothing
      returning id, store_id, dedupe_key, state, run_at, created_at
    ),
    moved as (select state from ins),
    ${notifyChanges()}
    select id, store_id, dedupe_key, state,
           (extract(epoch from run_at) * 1000)::float8 as run_at_ms, (extract(epoch from created_at) * 1000)::float8 as created_at_ms,
           (select count(*) from notified) as notified
    from ins order by id
  `.execute(db)
  return result.rows
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

/** A job by id, live or finished; `storeId` restricts to one store (null: any). */
export async function getById(db: Executor, args: { id: string; storeId: string | null }): Promise<JobRow | undefined> {
  const live = await db
    .selectFrom('jobs')
    .selectAll()
    .where('id', '=', args.id)
    .$if(args.storeId !== null, (q) => q.where('store_id', '=', args.storeId as string))
    .executeTakeFirst()
  if (live) return live as unknown as JobRow
  const done = await db
    .selectFrom('job_history')
    .selectAll()
    .where('id', '=', args.id)
    .$if(args.storeId !== null, (q) => q.where('store_id', '=', args.storeId as string))
    .executeTakeFirst()
  return done as unknown as JobRow | undefined
}
