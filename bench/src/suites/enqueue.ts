import { measure, medians, n, rowsBySystem, runsNote, suite } from '../harness.ts'
import { check, ratio } from '../targets.ts'
import { enqueueBulk, enqueueSingle } from '../workloads/enqueue.ts'

/** Workload 1: bulk and one-by-one enqueue. */
export const enqueueSuite = suite({
  key: 'enqueue',
  sizes: { quick: { bulk: 2_000, single: 200 }, full: { bulk: 100_000, single: 5_000 } },
  async run(ctx, size) {
    const bulk = await measure(ctx, `bulk enqueue ${n(size.bulk)}`, ctx.systems, (s) => enqueueBulk(s, size.bulk))
    const single = await measure(ctx, `single enqueue ${n(size.single)}`, ctx.systems, (s) => enqueueSingle(s, size.single))
    const bulkCol = `bulk ${n(size.bulk)} (jobs/s)`
    const singleCol = `single ${n(size.single)} (jobs/s)`
    const rows = rowsBySystem(ctx.systems)
    rows.add(medians(bulk, { [bulkCol]: (x) => x }))
    rows.add(medians(single, { [singleCol]: (x) => x }))
    const list = rows.list()
    return [
      {
        workload: 'enqueue',
        title: `Enqueue: ${n(size.bulk)} jobs through the bulk API, ${n(size.single)} one at a time`,
        columns: [bulkCol, singleCol],
        rows: list,
        compare: { [bulkCol]: 'higher', [singleCol]: 'higher' },
        targets: check(
          {
            name: 'Bulk enqueue vs graphile-worker',
            op: '≥',
            threshold: 1.5,
            unit: '×',
            why:
              'Each Backroom insert also charges its store\'s fair-share clock (an upsert into `stores` per store in the batch) and ' +
              'computes every job\'s virtual start time; both peers insert plain rows. Profiled at 100,000 jobs: about 9 µs of ' +
              'PostgreSQL CPU and 6 µs of Node.js CPU per job, one statement per 5,000 jobs.',
          },
          ratio(list, bulkCol, 'graphile'),
          'Backroom ÷ graphile, bulk',
        ),
        notes: [
          runsNote(ctx),
          'Bulk: chunks of 5,000 jobs per statement in every system. Single: one awaited enqueue after another, one client.',
          'Jobs spread over 100 stores; payload `{ i }`.',
        ],
      },
    ]
  },
})
