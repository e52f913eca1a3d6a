import { measure, medians, num, runsNote, suite } from '../harness.ts'
import { check } from '../targets.ts'
import { idleCost } from '../workloads/idle-cost.ts'

/** Workload 4: transactions per minute of an idle worker. */
export const idleSuite = suite({
  key: 'idle',
  sizes: { quick: { seconds: 2 }, full: { seconds: 60 } },
  async run(ctx, size) {
    const results = await measure(
      ctx,
      `idle cost ${size.seconds} s`,
      ctx.systems,
      (s, db) => idleCost(s, { seconds: size.seconds, url: db.url }),
      { concurrent: true },
    )
    const column = 'transactions/min'
    const rows = medians(results, { [column]: (r) => r.txPerMinute })
    return [
      {
        workload: 'idle',
        title: `Idle cost: transactions per minute against an empty queue, one worker of 10 slots, ${size.seconds} s window`,
        columns: [column],
        rows,
        compare: { [column]: 'lower' },
        targets: check(
          {
            name: 'Idle cost of one worker',
            op: '≤',
            threshold: 10,
            unit: ' tx/min',
            why:
              'The elected leader\'s maintenance (rescuer, promoter, retention, vacuum checks) and the 30 s safety poll each cost a ' +
              'transaction; a window of one minute is short enough for their timing to decide the count.',
          },
          num(rows, 'backroom', column),
          '',
        ),
        notes: [
          runsNote(ctx),
          'Committed + rolled-back transactions of the system\'s own database in pg_stat_database, read from another database; ' +
            'everything that runs there counts (workers, maintenance, the adapter\'s own connections).',
          'The systems idle at the same time, each on its own database (an idle measurement waits, it does not load the machine).',
        ],
      },
    ]
  },
})
