import { measure, medians, num, runsNote, suite } from '../harness.ts'
import { check } from '../targets.ts'
import { pickupLatency } from '../workloads/latency.ts'

const LATENCY_WHY =
  'The measurement starts before the enqueue call, so it includes the enqueue\'s own statement and durable commit. On this machine, ' +
  'with the process idle 20 ms between enqueues, a single enqueue took about 1.7-2.1 ms of it (0.5 ms back to back; a one-row ' +
  'UPDATE 0.9 ms after a 20 ms pause against 0.2 ms back to back), and the worker started the handler about 0.7-0.8 ms after the ' +
  'notification arrived (one prepared claim round trip).'

/** Workload 3: pick-up latency of an idle worker. */
export const latencySuite = suite({
  key: 'latency',
  fullRuns: 3,
  sizes: { quick: { count: 20, gapMs: 20 }, full: { count: 200, gapMs: 20 } },
  async run(ctx, size) {
    const results = await measure(ctx, `pick-up latency ${size.count}`, ctx.systems, async (s) => {
      const r = await pickupLatency(s, size)
      ctx.check(r.missed === 0, `${s.name} pick-up latency: ${r.missed} of ${size.count} jobs never started`)
      return r
    })
    const columns = {
      'p50 (ms)': (r: { p50: number }) => r.p50,
      'p95 (ms)': (r: { p95: number }) => r.p95,
      'p99 (ms)': (r: { p99: number }) => r.p99,
      'max (ms)': (r: { max: number }) => r.max,
      missed: (r: { missed: number }) => r.missed,
    }
    const rows = medians(results, columns)
    return [
      {
        workload: 'latency',
        title: `Pick-up latency: ${size.count} single enqueues ${size.gapMs} ms apart to an idle worker (10 slots)`,
        columns: Object.keys(columns),
        rows,
        compare: { 'p50 (ms)': 'lower', 'p95 (ms)': 'lower', 'p99 (ms)': 'lower' },
        targets: [
          ...check({ name: 'Pick-up latency p50', op: '≤', threshold: 3, unit: ' ms', why: LATENCY_WHY }, num(rows, 'backroom', 'p50 (ms)'), ''),
          ...check({ name: 'Pick-up latency p99', op: '≤', threshold: 15, unit: ' ms', why: LATENCY_WHY }, num(rows, 'backroom', 'p99 (ms)'), ''),
        ],
        notes: [
          runsNote(ctx),
          'Latency = handler start − just before the enqueue call, so the enqueue round trip is included. Nearest-rank percentiles.',
          'missed: jobs not started 5 s after the last enqueue (must be 0).',
        ],
      },
    ]
  },
})
