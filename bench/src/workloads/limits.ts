// The drain workload on a system that may have concurrency limits configured,
// plus a read of the limits that apply to its job type: a row meant to measure
// the limited claim path must show that limits exist (and are loose enough not
// to bind), and the row without limits that there are none.
import type { BenchSystem } from '../systems/system.ts'
import { drain, type DrainResult } from './drain.ts'
import { withClient } from './measure.ts'

/** What one drain under (possibly) configured limits measured. */
export interface LimitsDrainResult extends DrainResult {
  /**
   * The smallest concurrency limit on bench.noop when the drain ran: the
   * platform limit, the per-store default or any store's own limit; null
   * when there is none (every claim then takes the fast path).
   */
  readonly tightestLimit: number | null
}

/** Options of limitsDrain: drain()'s, plus the database the system was set up on. */
export interface LimitsDrainOptions {
  readonly url: string
  readonly n: number
  readonly concurrency: number
  readonly processes: number
  readonly timeoutMs?: number
  /** Runs after the enqueue, before the workers start (untimed), e.g. ANALYZE. */
  readonly beforeWorkers?: () => Promise<void>
}

/**
 * Reads the limits on bench.noop (untimed), then drains `n` no-op jobs over
 * 100 stores exactly as the drain workload does.
 */
export async function limitsDrain(system: BenchSystem, opts: LimitsDrainOptions): Promise<LimitsDrainResult> {
  // least() and min() skip nulls, so this is null only when no limit is set.
  const tightestLimit = await withClient(opts.url, async (c) => {
    const { rows } = await c.query<{ tightest: number | null }>(
      `select least((select min(least(max_running, max_running_per_store)) from job_types where type = $1),
                    (select min(max_running) from store_type_limits where type = $1))::int as tightest`,
      ['bench.noop'],
    )
    return rows[0]?.tightest ?? null
  })
  return { ...(await drain(system, opts)), tightestLimit }
}
