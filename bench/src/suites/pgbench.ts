import { median, runsNote, suite } from '../harness.ts'
import { progressContext } from '../progress.ts'
import { serverUrl } from '../database.ts'
import { pgbenchCeiling } from '../workloads/pgbench.ts'

/** Workload 8: the server's ceiling for one-row-update transactions. */
export const pgbenchSuite = suite({
  key: 'pgbench',
  sizes: { quick: { clients: 8, seconds: 2 }, full: { clients: 8, seconds: 30 } },
  async run(ctx, size) {
    const runs: Array<Awaited<ReturnType<typeof pgbenchCeiling>>> = []
    for (let r = 0; r < ctx.runs; r++) {
      progressContext(`${ctx.step} · pgbench ${size.clients} clients${ctx.runs > 1 ? ` run ${r + 1}/${ctx.runs}` : ''}`)
      try {
        runs.push(await pgbenchCeiling({ url: serverUrl(), clients: size.clients, seconds: size.seconds }))
      } catch (error) {
        ctx.check(false, `pgbench: ${(error as Error).message}`)
      }
    }
    const last = runs.at(-1)
    return [
      {
        workload: 'pgbench',
        title: `Server ceiling: pgbench, ${size.clients} clients, ${size.seconds} s, one single-row update per transaction`,
        columns: ['transactions/s', 'latency (ms)'],
        rows: [
          {
            system: 'PostgreSQL (pgbench)',
            values: runs.length === 0
              ? { 'transactions/s': 'error', 'latency (ms)': 'error' }
              : { 'transactions/s': median(runs.map((r) => r.tps)), 'latency (ms)': median(runs.map((r) => r.latencyMs)) },
          },
        ],
        notes: [
          runsNote(ctx),
          'Every queue here spends at least one commit per job or per batch, so this bounds the jobs/s of one-commit-per-job paths.',
          ...(last
            ? [
                `Command: \`${last.command}\`.`,
                `Settings: ${Object.entries(last.settings).map(([k, v]) => `${k}=${v}`).join(', ')}.`,
              ]
            : []),
        ],
      },
    ]
  },
})
