import type { Executor } from './db/database.ts'
import * as health from './db/queue-health.ts'
import { ValidationError } from './errors.ts'
import { checkStoreId } from './validate.ts'

/** Pending jobs above which a line raises `backlog`. */
export const DEFAULT_BACKLOG_THRESHOLD = 1_000
/** Age of the oldest pending job (since it was created, as in job_queue_health) above which a line raises `oldest_pending`. */
export const DEFAULT_OLDEST_PENDING_MS = 5 * 60_000
/** A running job counts as long running past this; any such job raises `long_running`. The view's own figure (30 min). */
export const DEFAULT_LONG_RUNNING_MS = 30 * 60_000
/** Store lines returned (largest backlog first) when the caller does not say. */
export const DEFAULT_HEALTH_STORE_LIMIT = 100
/** Most store lines one call may ask for. */
export const MAX_HEALTH_STORE_LIMIT = 1_000

/** The alert conditions a line can raise. */
export const HEALTH_ALERTS = ['backlog', 'oldest_pending', 'long_running'] as const
export type HealthAlert = (typeof HEALTH_ALERTS)[number]

/** When a line raises an alert. */
export interface HealthThresholds {
  /** `backlog` when pending jobs exceed this. */
  readonly backlog: number
  /** `oldest_pending` when the oldest pending job is older than this (ms). */
  readonly oldestPendingMs: number
  /** A running job started longer ago than this (ms) is long running; `long_running` when any is. */
  readonly longRunningMs: number
}

/** The job_queue_health figures of one line (overall, a type, a store or a store's type). */
export interface HealthFigures {
  readonly pending: number
  readonly scheduled: number
  readonly running: number
  readonly paused: number
  /** Age of the oldest pending job in ms (since its creation); null when nothing is pending. */
  readonly oldestPendingMs: number | null
  /** Running jobs started longer ago than `thresholds.longRunningMs`. */
  readonly longRunning: number
  /** The conditions this line meets, in HEALTH_ALERTS order; empty when healthy. */
  readonly alerts: ReadonlyArray<HealthAlert>
}

/** The queue's health: overall, per type, per store and per store and type. */
export interface QueueHealth {
  readonly thresholds: HealthThresholds
  readonly overall: HealthFigures
  readonly byType: ReadonlyArray<HealthFigures & { readonly type: string }>
  /** The `storeLimit` stores with the largest backlog (all of them below the limit). */
  readonly byStore: ReadonlyArray<HealthFigures & { readonly storeId: string }>
  /** The types of the stores in `byStore`. */
  readonly byStoreType: ReadonlyArray<HealthFigures & { readonly storeId: string; readonly type: string }>
}

/** Options of {@link queueHealth}. */
export interface QueueHealthOptions {
  /** Only this store's jobs (a store key's view): every line, overall included, covers that store alone. */
  readonly storeId?: string | null
  readonly thresholds?: Partial<HealthThresholds>
  /** Store lines returned, largest backlog first: 1 to 1,000. Default 100. */
  readonly storeLimit?: number
}

/**
 * The figures of the `job_queue_health` view (pending, scheduled, running,
 * paused, oldest pending age, long running) overall, per type, per store and
 * per store and type, each line with the alert conditions it meets:
 * `backlog` (pending over a threshold), `oldest_pending` (the oldest pending
 * job older than a threshold) and `long_running` (any job running longer
 * than a threshold). Scoped by `storeId` when given. Read-only; one scan of
 * the live table.
 *
 * Throws {@link ValidationError} for options out of range.
 *
 * @example
 * const h = await queueHealth(db.kysely, { storeId: 'store-42', thresholds: { backlog: 500 } })
 * if (h.overall.alerts.length > 0) log.warn({ alerts: h.overall.alerts }, 'queue unhealthy')
 */
export async function queueHealth(db: Executor, options: QueueHealthOptions = {}): Promise<QueueHealth> {
  const thresholds: HealthThresholds = {
    backlog: options.thresholds?.backlog ?? DEFAULT_BACKLOG_THRESHOLD,
    oldestPendingMs: options.thresholds?.oldestPendingMs ?? DEFAULT_OLDEST_PENDING_MS,
    longRunningMs: options.thresholds?.longRunningMs ?? DEFAULT_LONG_RUNNING_MS,
  }
  for (const [field, value] of Object.entries(thresholds)) {
    // Integers within int4: the statement casts the long-running threshold to int.
    if (!Number.isInteger(value) || value < 0 || value > 2_147_483_647) {
      throw new ValidationError(`thresholds.${field} must be a non-negative integer`, { field: `thresholds.${field}` })
    }
  }
  const storeLimit = options.storeLimit ?? DEFAULT_HEALTH_STORE_LIMIT
  if (!Number.isInteger(storeLimit) || storeLimit < 1 || storeLimit > MAX_HEALTH_STORE_LIMIT) {
    throw new ValidationError(`storeLimit must be an integer from 1 to ${MAX_HEALTH_STORE_LIMIT}`, { field: 'storeLimit' })
  }
  const storeId = options.storeId ?? null
  if (storeId !== null) checkStoreId(storeId)

  const rows = await health.healthFigures(db, { storeId, longRunningMs: thresholds.longRunningMs, storeLimit })
  const figures = (r: health.HealthRow): HealthFigures => {
    const line = {
      pending: r.pending,
      scheduled: r.scheduled,
      running: r.running,
      paused: r.paused,
      oldestPendingMs: r.oldest_pending_ms === null ? null : Math.max(0, Math.round(r.oldest_pending_ms)),
      longRunning: r.long_running,
    }
    return { ...line, alerts: alertsOf(line, thresholds) }
  }
  const overallRow = rows.find((r) => r.level === 'overall')
  if (overallRow === undefined) throw new Error('queue health: the statement returned no overall line')
  return {
    thresholds,
    overall: figures(overallRow),
    byType: rows.filter((r) => r.level === 'type').map((r) => ({ type: r.type as string, ...figures(r) })),
    byStore: rows.filter((r) => r.level === 'store').map((r) => ({ storeId: r.store_id as string, ...figures(r) })),
    byStoreType: rows
      .filter((r) => r.level === 'store_type')
      .map((r) => ({ storeId: r.store_id as string, type: r.type as string, ...figures(r) })),
  }
}

/** The alert conditions a line meets, in HEALTH_ALERTS order. */
export function alertsOf(
  line: Pick<HealthFigures, 'pending' | 'oldestPendingMs' | 'longRunning'>,
  thresholds: HealthThresholds,
): HealthAlert[] {
  const alerts: HealthAlert[] = []
  if (line.pending > thresholds.backlog) alerts.push('backlog')
  if (line.oldestPendingMs !== null && line.oldestPendingMs > thresholds.oldestPendingMs) alerts.push('oldest_pending')
  if (line.longRunning > 0) alerts.push('long_running')
  return alerts
}
