import type { SystemEntry } from '../harness.ts'
import { analyzeDb, measure, medians, n, rowsBySystem, runsNote, suite } from '../harness.ts'
import { backroom } from '../systems/backroom.ts'
import { BACKROOM_FAST_PREFETCH } from '../systems/registry.ts'
import { check, ratio } from '../targets.ts'
import { limitsDrain } from '../workloads/limits.ts'

/** One in-process pool with many slots, and several processes (each its own claimer, contending for the per-type lock). */
const LIMITS_CONFIGS = [
  { concurrency: 50, processes: 1 },
  { concurrency: 10, processes: 4 },
] as const

const WITH_LIMITS = 'backroom-limits'

/** Backroom's settings of the drain table, with loose limits on its job type. */
const backroomLimits: SystemEntry = {
  name: WITH_LIMITS,
  make: () => backroom({ prefetch: BACKROOM_FAST_PREFETCH, limits: 'loose' }),
}

/** The most jobs the workers of a configuration can hold claimed (running) at once: slots plus prefetch, per process. */
const mostRunning = (c: { concurrency: number; processes: number }) => c.processes * (c.concurrency + BACKROOM_FAST_PREFETCH)

/**
 * The cost of concurrency limits that exist but never bind: the same drain as
 * the drain table, Backroom without limits against Backroom with a platform
 * and per-store limit on its job type far above what the workers can hold.
 * Runs only when `backroom` is among the selected systems.
 */
export const limitsSuite = suite({
  key: 'limits',
  sizes: { quick: { jobs: 1_000, timeoutMs: 120_000 }, full: { jobs: 100_000, timeoutMs: 900_000 } },
  async run(ctx, size) {
    const plain = ctx.systems.find((s) => s.name === 'backroom')
    if (!plain) return []
    const systems = [plain, backroomLimits]
    const columns: string[] = []
    const rows = rowsBySystem(systems)
    for (const config of LIMITS_CONFIGS) {
      const { concurrency, processes } = config
      const label = `limits drain c=${concurrency} p=${processes}`
      const column = `c=${concurrency} p=${processes} (jobs/s)`
      columns.push(column)
      const results = await measure(ctx, label, systems, async (s, db) => {
        const r = await limitsDrain(s, { url: db.url, n: size.jobs, concurrency, processes, timeoutMs: size.timeoutMs, beforeWorkers: analyzeDb(db) })
        ctx.check(
          r.completed === size.jobs && r.handled === size.jobs && r.anomalies === 0,
          `${s.name} ${label}: expected ${size.jobs} jobs completed and handled once each, got completed=${r.completed} handled=${r.handled} anomalies=${r.anomalies}`,
        )
        // Without these the two rows would measure the same claim, or limits that bind.
        if (s.name === WITH_LIMITS) {
          ctx.check(
            r.tightestLimit !== null && r.tightestLimit > mostRunning(config),
            `${s.name} ${label}: expected limits on bench.noop above ${mostRunning(config)} (never binding), got ${r.tightestLimit ?? 'none'}`,
          )
        } else {
          ctx.check(r.tightestLimit === null, `${s.name} ${label}: expected no limits on bench.noop, got ${r.tightestLimit}`)
        }
        return r
      })
      rows.add(medians(results, { [column]: (r) => r.jobsPerSec }))
    }
    const list = rows.list()
    // Worst configuration: the goal must hold for one pool and for several processes alike.
    const each = columns.map((c) => [c, ratio(list, c, 'backroom', WITH_LIMITS)] as const).filter(([, r]) => Number.isFinite(r))
    const worst = each.length === 0 ? Number.NaN : Math.min(...each.map(([, r]) => r))
    const detail = `worst of ${each.map(([c, r]) => `${c.replace(/ \(.*\)$/, '')}: ${r.toFixed(2)}×`).join(', ')}`
    return [
      {
        workload: 'limits',
        title: `Concurrency limits: drain with limits configured but not binding vs none (${n(size.jobs)} no-op jobs, 100 stores)`,
        columns,
        rows: list,
        compare: Object.fromEntries(columns.map((c) => [c, 'higher' as const])),
        // So the ratio table reads limits ÷ none, as the target does.
        baseline: WITH_LIMITS,
        targets: check(
          { name: 'Drain with limits configured but not binding vs none, every configuration', op: '≥', threshold: 0.8, unit: '×' },
          worst,
          detail,
        ),
        notes: [
          runsNote(ctx),
          `Both rows are Backroom with the drain table's settings (prefetch ${BACKROOM_FAST_PREFETCH}). \`${WITH_LIMITS}\` sets ` +
            'bench.noop to at most 100,000 running per store and 1,000,000 in all, far above the most the workers can hold claimed ' +
            'at once (slots + prefetch per process), so no limit ever binds; each run checks the limits it ran under.',
          'With any limit on its type, every claim goes through the limited path (a transaction, a per-type advisory lock, a count ' +
            'of the running set); the fast claim skips limited types, so a completed drain in that row means every job was claimed there.',
          'The jobs are enqueued first (untimed); the clock runs from the workers started to the last completion committed.',
          'The database is ANALYZEd after the enqueue, before the workers start (untimed), as in the drain table.',
          'Each run checks that every job completed and its handler ran exactly once.',
        ],
      },
    ]
  },
})
