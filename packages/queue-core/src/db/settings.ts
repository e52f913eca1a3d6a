import { sql } from 'kysely'
import type { Executor } from './database.ts'

/** Upserts a store's fairness weight. */
export async function upsertStoreWeight(db: Executor, args: { storeId: string; weight: number }): Promise<void> {
  await sql`
    insert into stores (store_id, weight) values (${args.storeId}, ${args.weight})
    on conflict (store_id) do update set weight = excluded.weight
  `.execute(db)
}

/** Upserts a store's live-job cap (null: none). */
export async function upsertStoreLiveCap(db: Executor, args: { storeId: string; cap: number | null }): Promise<void> {
  await sql`
    insert into stores (store_id, max_live_jobs) values (${args.storeId}, ${args.cap})
    on conflict (store_id) do update set max_live_jobs = excluded.max_live_jobs
  `.execute(db)
}

/** The settable columns of a job type; undefined leaves a column as it is, null clears it. */
export interface JobTypeColumns {
  readonly cost?: number | null
  readonly maxRunning?: number | null
  readonly maxRunningPerStore?: number | null
  /** Coalescing (see migration 0007); null turns it off. */
  readonly coalesce?: {
    /** 'append': concatenate the array under `field`; 'merge': shallow object merge; 'replace': newest payload wins. */
    readonly strategy: 'append' | 'merge' | 'replace'
    /** The array to concatenate with 'append' (default `items`). */
    readonly field?: string
    /** How long an open job waits for more enqueues to fold in (default 0: due at once, still open until claimed). */
    readonly maxDelayMs?: number
    /** Enqueues one job takes at most before it is sealed (default: no limit). */
    readonly maxBatch?: number
  } | null
}

/** Upserts an operator's settings for a job type, touching only the columns given. */
export async function upsertJobType(db: Executor, args: { type: string } & JobTypeColumns): Promise<void> {
  const given = (v: unknown) => v !== undefined
  const c = args.coalesce ?? null
  await sql`
    insert into job_types (type, cost, max_running, max_running_per_store,
                           coalesce_strategy, coalesce_field, coalesce_max_delay_ms, coalesce_max_batch)
    values (${args.type}, ${args.cost ?? null}, ${args.maxRunning ?? null}, ${args.maxRunningPerStore ?? null},
            ${c?.strategy ?? null}, ${c?.field ?? null}, ${c?.maxDelayMs ?? null}, ${c?.maxBatch ?? null})
    on conflict (type) do update set
      coalesce_strategy     = case when ${given(args.coalesce)} then excluded.coalesce_strategy else job_types.coalesce_strategy end,
      coalesce_field        = case when ${given(args.coalesce)} then excluded.coalesce_field else job_types.coalesce_field end,
      coalesce_max_delay_ms = case when ${given(args.coalesce)} then excluded.coalesce_max_delay_ms else job_types.coalesce_max_delay_ms end,
      coalesce_max_batch    = case when ${given(args.coalesce)} then excluded.coalesce_max_batch else job_types.coalesce_max_batch end,
      cost                  = case when ${given(args.cost)} then excluded.cost else job_types.cost end,
      max_running           = case when ${given(args.maxRunning)} then excluded.max_running else job_types.max_running end,
      max_running_per_store = case when ${given(args.maxRunningPerStore)} then excluded.max_running_per_store else job_types.max_running_per_store end,
      updated_at            = now()
  `.execute(db)
}

/**
 * Records the costs handlers declare (workers call this on start). Only the
 * declared column changes: an operator's cost stays in force.
 */
export async function declareCosts(db: Executor, declared: ReadonlyArray<{ type: string; cost: number }>): Promise<void> {
  if (declared.length === 0) return
  await sql`
    insert into job_types (type, declared_cost)
    select type, cost from unnest(${declared.map((d) => d.type)}::text[], ${declared.map((d) => d.cost)}::real[]) as d(type, cost)
    order by type
    on conflict (type) do update set declared_cost = excluded.declared_cost, updated_at = now()
    where job_types.declared_cost is distinct from excluded.declared_cost
  `.execute(db)
}

/** Sets (or with null removes) one store's own running limit for a job type. */
export async function upsertStoreTypeLimit(
  db: Executor,
  args: { storeId: string; type: string; maxRunning: number | null },
): Promise<void> {
  if (args.maxRunning === null) {
    await sql`delete from store_type_limits where store_id = ${args.storeId} and type = ${args.type}`.execute(db)
    return
  }
  await sql`
    insert into store_type_limits (store_id, type, max_running) values (${args.storeId}, ${args.type}, ${args.maxRunning})
    on conflict (store_id, type) do update set max_running = excluded.max_running
  `.execute(db)
}
