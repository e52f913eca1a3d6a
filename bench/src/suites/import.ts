import { fmt, measure, medians, n, runsNote, suite } from '../harness.ts'
import { check } from '../targets.ts'
import { IMPORT_WORKER_HEAP_MB, importProducts } from '../workloads/import-products.ts'

/** The worker's peak resident memory must stay under this during a 100k-row import. */
const RSS_GOAL_MB = 200

/**
 * The `import` workload: one product feed imported by import.products (CSV
 * over HTTP, staged, then upserted by parallel chunk jobs) in a worker
 * process of 4 slots. Backroom only: the peers have no import handler.
 */
export const importSuite = suite({
  key: 'import',
  sizes: { quick: { rows: 2_000, timeoutMs: 120_000 }, full: { rows: 100_000, timeoutMs: 900_000 } },
  async run(ctx, size) {
    const systems = ctx.systems.filter((s) => s.name === 'backroom')
    if (systems.length === 0) return []
    const results = await measure(ctx, `import ${n(size.rows)} rows`, systems, async (_s, db) => {
      const r = await importProducts({ url: db.url, rows: size.rows, timeoutMs: size.timeoutMs })
      ctx.check(
        r.state === 'completed' && r.products === r.expected.products && r.rowsDone === r.expected.rowsDone && r.rowsFailed === r.expected.rowsFailed,
        `import ${n(size.rows)} rows: expected completed with ${r.expected.products} products, ${r.expected.rowsDone} rows done and ` +
          `${r.expected.rowsFailed} failed; got ${r.state} with ${r.products} products, ${r.rowsDone} done, ${r.rowsFailed} failed`,
      )
      return r
    })
    const columns = {
      'rows/s': (r: { rowsPerSec: number }) => r.rowsPerSec,
      'worker peak RSS (MB)': (r: { peakRssMb: number }) => r.peakRssMb,
      'worker RSS at start (MB)': (r: { startRssMb: number }) => r.startRssMb,
    }
    const rows = medians(results, columns)
    const peak = rows.find((r) => r.system === 'backroom')?.values['worker peak RSS (MB)']
    return [
      {
        workload: 'import',
        title: `Product import: one ${n(size.rows)}-row CSV feed, one worker process of 4 slots`,
        columns: Object.keys(columns),
        rows,
        targets: check(
          { name: `Worker peak RSS importing ${n(size.rows)} rows`, op: '≤', threshold: RSS_GOAL_MB, unit: ' MB' },
          typeof peak === 'number' ? peak : Number.NaN,
          '',
        ),
        notes: [
          runsNote(ctx),
          'The feed is generated and served over HTTP by the bench process (1 line in 1,000 has a bad price; the last 1 % repeat earlier SKUs). ' +
            'rows/s counts feed lines from the enqueue to the parent job completed: download and staging, chunking, the chunk upserts and the parent\'s ' +
            'snoozed polls (250 ms here).',
          `Peak RSS is the worker process's maxRSS, run with \`--max-old-space-size=${IMPORT_WORKER_HEAP_MB}\` as a worker kept within 200 MB ` +
            'would be. It runs TypeScript sources under tsx, whose loader thread and transpiled sources take about 75 MB more than compiled JS ' +
            `(RSS at start: ${fmt(Number(rows[0]?.values['worker RSS at start (MB)']))} MB).`,
          'Each run checks the import completed with every product and the expected counts of rows done and rejected.',
        ],
      },
    ]
  },
})
