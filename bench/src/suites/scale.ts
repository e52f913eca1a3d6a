import { firstOk, measure, medians, n, rowsBySystem, runsNote, short, suite } from '../harness.ts'
import { withScaleHooks } from '../systems/registry.ts'
import { check } from '../targets.ts'
import { scaleHistory, scalePending } from '../workloads/scale.ts'

/** Workload 5: claim and drain over a large history, and drain rate as the backlog grows. */
export const scaleSuite = suite({
  key: 'scale',
  sizes: {
    quick: {
      history: [{ finished: 5_000, backroomOnly: false }, { finished: 20_000, backroomOnly: false }],
      historyPending: 500,
      pending: [200, 2_000],
      drainJobs: 500,
      concurrency: 10,
    },
    full: {
      history: [{ finished: 1_000_000, backroomOnly: false }, { finished: 10_000_000, backroomOnly: true }],
      historyPending: 10_000,
      pending: [1_000, 10_000, 100_000, 1_000_000],
      drainJobs: 10_000,
      concurrency: 10,
    },
    issue: {
      history: [{ finished: 1_000_000, backroomOnly: false }, { finished: 10_000_000, backroomOnly: false }],
      historyPending: 10_000,
      pending: [1_000, 10_000, 100_000, 1_000_000],
      drainJobs: Number.POSITIVE_INFINITY,
      concurrency: 10,
    },
  },
  async run(ctx, size) {
    const systems = withScaleHooks(ctx.systems)
    const skipped = ctx.systems.filter((s) => !systems.includes(s)).map((s) => s.name)
    const history = rowsBySystem(systems)
    const historyColumns: string[] = []
    const compareHistory: Record<string, 'higher' | 'lower'> = {}
    const appendix: Array<{ summary: string; text: string }> = []
    for (const point of size.history) {
      const pointSystems = point.backroomOnly ? systems.filter((s) => s.name === 'backroom') : systems
      const label = `history ${short(point.finished)}`
      const claimCol = `claim @${short(point.finished)} (ms)`
      const drainCol = `drain @${short(point.finished)} (jobs/s)`
      historyColumns.push(claimCol, drainCol)
      compareHistory[claimCol] = 'lower'
      compareHistory[drainCol] = 'higher'
      const results = await measure(ctx, label, pointSystems, async (s, db) => {
        const r = await scaleHistory(s, {
          finished: point.finished,
          pending: size.historyPending,
          drainJobs: size.historyPending,
          concurrency: size.concurrency,
          url: db.url,
        })
        ctx.check(
          r.drained >= size.historyPending && (r.anomalies ?? 0) === 0,
          `${s.name} ${label}: expected ${size.historyPending} jobs drained without anomalies, got drained=${r.drained} anomalies=${r.anomalies}`,
        )
        return r
      })
      history.add(medians(results, { [claimCol]: (r) => r.claimMs, [drainCol]: (r) => r.drainJobsPerSec }))
      for (const s of systems) if (!pointSystems.includes(s)) history.set(s.name, claimCol, 'not run')
      for (const s of systems) if (!pointSystems.includes(s)) history.set(s.name, drainCol, 'not run')
      for (const [system, r] of firstOk(results)) appendix.push({ summary: `${system}: fetch plan over ${n(point.finished)} finished jobs`, text: r.plan })
    }

    const pending = rowsBySystem(systems)
    const pendingColumns: string[] = []
    const pendingPlans: Array<{ summary: string; text: string }> = []
    const rates = new Map<string, number[]>()
    for (const depth of size.pending) {
      const drainJobs = Math.min(depth, size.drainJobs)
      const label = `pending ${short(depth)}`
      const column = `${short(depth)} pending (jobs/s)`
      pendingColumns.push(column)
      const results = await measure(ctx, label, systems, async (s, db) => {
        const r = await scalePending(s, { pending: depth, concurrency: size.concurrency, drainJobs, url: db.url })
        ctx.check(
          r.drained >= drainJobs && (r.anomalies ?? 0) === 0,
          `${s.name} ${label}: expected at least ${drainJobs} jobs drained without anomalies, got drained=${r.drained} anomalies=${r.anomalies}`,
        )
        return r
      })
      const rows = medians(results, { [column]: (r) => r.drainJobsPerSec })
      pending.add(rows)
      for (const row of rows) rates.set(row.system, [...(rates.get(row.system) ?? []), Number(row.values[column])])
      if (depth === size.pending.at(-1)) {
        const claimCol = `claim @${short(depth)} (ms)`
        pendingColumns.push(claimCol)
        pending.add(medians(results, { [claimCol]: (r) => r.claimMs }))
        for (const [system, r] of firstOk(results)) if (r.plan) pendingPlans.push({ summary: `${system}: fetch plan with ${n(depth)} pending`, text: r.plan })
      }
    }
    const first = short(size.pending[0]!)
    const last = short(size.pending.at(-1)!)
    const keepCol = `${last} ÷ ${first}`
    pendingColumns.push(keepCol)
    for (const [system, r] of rates) pending.set(system, keepCol, r.at(-1)! / r[0]!)
    const historyRows = history.list()
    const deepest = size.history.at(-1)!.finished
    const claimDeepest = historyRows.find((r) => r.system === 'backroom')?.values[`claim @${short(deepest)} (ms)`]
    const backlog = rates.get('backroom')
    const targets = [
      ...check(
        {
          name: `Claim of 100 jobs with ${short(deepest)} finished jobs kept`,
          op: '≤',
          threshold: 1,
          unit: ' ms',
          why:
            'The claim walks jobs_claim_idx (history is in another table, so its size does not matter) but updates 100 rows that ' +
            'are not HOT-updatable (state is in partial-index predicates): each gets a new heap version and new entries in the ' +
            'primary key and the running-set index, about 8-10 µs a row here.',
        },
        typeof claimDeepest === 'number' ? claimDeepest : Number.NaN,
        'EXPLAIN ANALYZE, median of 5',
      ),
      ...check(
        { name: `Drain rate at ${last} pending over ${first} pending`, op: '≥', threshold: 0.8, unit: '×' },
        backlog ? backlog.at(-1)! / backlog[0]! : Number.NaN,
        'within 20% or faster',
      ),
    ]
    const skippedNote = skipped.length > 0 ? [`Not run (adapter without fillFinished/explainFetch): ${skipped.join(', ')}.`] : []
    return [
      {
        workload: 'scale',
        title: `Scale, history: fetch and drain over finished history (${size.history.map((p) => short(p.finished)).join(', ')} finished jobs, ${n(size.historyPending)} pending, ${size.concurrency} slots)`,
        columns: historyColumns,
        rows: historyRows,
        compare: compareHistory,
        appendix,
        notes: [
          runsNote(ctx),
          'The history is filled with plain SQL into each system\'s own history/archive (graphile-worker keeps none); then the pending jobs are enqueued, ' +
            'the database ANALYZEd and CHECKPOINTed. claim: median of 5 EXPLAIN ANALYZE of the system\'s own fetch of up to 100 jobs, rolled back. ' +
            `drain: all ${n(size.historyPending)} pending jobs, timed. Plans in the folded sections below.`,
          ...(size.history.some((p) => p.backroomOnly)
            ? ['`not run`: the 10M-row point runs for Backroom only in the default full run (filling 10M rows per peer does not fit in 30 minutes); `--issue-sizes` runs it for every system.']
            : []),
          ...skippedNote,
        ],
      },
      {
        workload: 'scale',
        title: `Scale, backlog: drain rate as the pending backlog grows (${size.pending.map(short).join(', ')} pending, ${size.concurrency} slots)`,
        columns: pendingColumns,
        rows: pending.list(),
        compare: Object.fromEntries([...pendingColumns.filter((c) => c.endsWith('(jobs/s)')).map((c) => [c, 'higher' as const]), [keepCol, 'higher' as const]]),
        targets,
        appendix: pendingPlans,
        notes: [
          runsNote(ctx),
          Number.isFinite(size.drainJobs)
            ? `Each backlog is enqueued and ANALYZEd (untimed), then the first ${n(size.drainJobs)} jobs (or all, when fewer) are drained, timed.`
            : 'Each backlog is enqueued and ANALYZEd (untimed), then drained whole, timed.',
          `${keepCol}: jobs/s at the deepest backlog over jobs/s at the shallowest (1 = no slow-down).`,
          ...skippedNote,
        ],
      },
    ]
  },
})
