import type { Executor } from './db/database.ts'
import * as stats from './db/stats.ts'
import { ValidationError } from './errors.ts'
import { checkStoreId } from './validate.ts'

export const DEFAULT_FAIRNESS_WINDOW_MS = 5 * 60_000
export const DEFAULT_FAIRNESS_LIMIT = 100

const MIN_WINDOW_MS = 1_000
const MAX_WINDOW_MS = 86_400_000
const MAX_LIMIT = 1_000

/** How one store fared over a window: what it got against what its weight entitles it to. */
export interface StoreFairness {
  readonly storeId: string
  /** `stores.weight`; 1 when the store has no row. */
  readonly weight: number
  /** Jobs of the store that started in the window (finished or still running). */
  readonly started: number
  /** `started` over all jobs started in the window, 0..1. */
  readonly share: number
  /** `weight` over the summed weights of the stores that started anything in the window, 0..1. */
  readonly weightShare: number
  /** Median wait (started_at - run_at, floored at 0) of those jobs in ms; null when none. */
  readonly waitP50Ms: number | null
  /** 99th percentile of the same wait in ms; null when none. */
  readonly waitP99Ms: number | null
}

/** Options for {@link fairnessStats}. */
export interface FairnessStatsOptions {
  /** How far back to look, in ms: an integer from 1,000 to 86,400,000. Default 5 minutes. */
  readonly windowMs?: number
  /** Only this store's line; shares are still against every store. Null or omitted: all stores. */
  readonly storeId?: string | null
  /** Most stores returned, busiest first: 1 to 1,000. Default 100. */
  readonly limit?: number
}

/**
 * Which stores got the workers lately, against what their weights entitle
 * them to. For each store that started a job in the window (finished jobs
 * from history plus jobs still running): jobs started, its share of them,
 * its share of the active stores' total weight, and its p50/p99 wait from
 * due to started. A store whose `share` sits well below its `weightShare`
 * while its waits grow was short-changed; above it, it used workers others
 * left idle. Stores with nothing started in the window are not listed
 * (so `storeId` for an idle store gives no line). Read-only.
 *
 * Throws {@link ValidationError} for options out of range.
 *
 * @example
 * const { stores } = await fairnessStats(db.kysely, { windowMs: 60_000, limit: 10 })
 * for (const s of stores) log.info({ storeId: s.storeId, share: s.share, weightShare: s.weightShare }, 'store fairness')
 */
export async function fairnessStats(
  db: Executor,
  options: FairnessStatsOptions = {},
): Promise<{ windowMs: number; stores: StoreFairness[] }> {
  const windowMs = options.windowMs ?? DEFAULT_FAIRNESS_WINDOW_MS
  const limit = options.limit ?? DEFAULT_FAIRNESS_LIMIT
  const storeId = options.storeId ?? null
  if (!Number.isInteger(windowMs) || windowMs < MIN_WINDOW_MS || windowMs > MAX_WINDOW_MS) {
    throw new ValidationError(`windowMs must be an integer from ${MIN_WINDOW_MS} to ${MAX_WINDOW_MS}`, { field: 'windowMs' })
  }
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
    throw new ValidationError(`limit must be an integer from 1 to ${MAX_LIMIT}`, { field: 'limit' })
  }
  if (storeId !== null) checkStoreId(storeId)
  const rows = await stats.fairnessByStore(db, { windowMs, storeId, limit })
  // db/rows.ts is the house place for row conversion; this shape is private to stats and kept beside its only user.
  const stores = rows.map((r) => ({
    storeId: r.store_id,
    weight: r.weight,
    started: r.started,
    share: r.share,
    weightShare: r.weight_share,
    waitP50Ms: r.wait_p50_ms,
    waitP99Ms: r.wait_p99_ms,
  }))
  return { windowMs, stores }
}
