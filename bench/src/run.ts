// pnpm bench [--quick] [--systems=a,b] [--only=enqueue,drain,...] [--runs=N] [--issue-sizes]
//
// Runs the selected workloads against the selected systems, each measurement on
// a fresh database of one PostgreSQL server, prints every table as it is done
// and, after a full run, writes BENCHMARKS.md at the repo root.
//
// --quick is the CI smoke check (bench/package.json `test`): tiny sizes, one run,
// no BENCHMARKS.md. It asserts correctness only (every job done exactly once
// where the workload can tell) and exits 1 on any failure; timings never fail it.
//
// Adding a workload: a file in suites/ declaring `suite({...})` with its
// `--only` key, its quick and full sizes, and a run() returning result tables
// (report.ts WorkloadResult), listed in SUITES below. measure() gives each
// system and run a fresh database and collects the runs; medians() turns them
// into table rows; ctx.check() records what must hold (a quick run exits 1
// when it does not); targets.ts checks Backroom's goals:
//
//   export const retrySuite = suite({
//     key: 'retry',
//     fullRuns: 3,
//     sizes: { quick: { jobs: 100 }, full: { jobs: 10_000 } },
//     async run(ctx, size) {
//       const results = await measure(ctx, 'retry', ctx.systems, async (s, db) => {
//         const r = await retryStorm(s, { jobs: size.jobs, url: db.url })
//         ctx.check(r.lost === 0, `${s.name} retry: ${r.lost} jobs lost`)
//         return r
//       })
//       const columns = { 'jobs/s': (r: { jobsPerSec: number }) => r.jobsPerSec }
//       return [{ workload: 'retry', title: `Retry storm: ${size.jobs} jobs`, columns: Object.keys(columns),
//                 rows: medians(results, columns), compare: { 'jobs/s': 'higher' }, notes: [runsNote(ctx)] }]
//     },
//   })
import { dropLiveDatabases, serverSettings, serverUrl } from './database.ts'
import type { RunContext, Suite, SystemEntry } from './harness.ts'
import { progressContext, progressDone } from './progress.ts'
import { renderTargets, renderWorkload, writeReport, type WorkloadResult } from './report.ts'
import { apiSuite } from './suites/api.ts'
import { churnSuite } from './suites/churn.ts'
import { drainSuite } from './suites/drain.ts'
import { enqueueSuite } from './suites/enqueue.ts'
import { idleSuite } from './suites/idle.ts'
import { importSuite } from './suites/import.ts'
import { latencySuite } from './suites/latency.ts'
import { limitsSuite } from './suites/limits.ts'
import { noisySuite } from './suites/noisy.ts'
import { pgbenchSuite } from './suites/pgbench.ts'
import { scaleSuite } from './suites/scale.ts'
import { DEFAULT_SYSTEMS, SYSTEMS } from './systems/registry.ts'

/** Every suite, in the order a full run takes them. */
const WORKLOADS: ReadonlyArray<Suite> = [enqueueSuite, drainSuite, latencySuite, idleSuite, scaleSuite, noisySuite, limitsSuite, churnSuite, pgbenchSuite, importSuite, apiSuite]

// ---------------------------------------------------------------------------
// Flags

const args = process.argv.slice(2)
const valueOf = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
const listOf = (name: string) => valueOf(name)?.split(',').map((s) => s.trim()).filter(Boolean) ?? null
const quick = args.includes('--quick')
/** The issue's sizes where the default full run trims them to fit in 30 minutes (see FULL_RUN_NOTES). */
const issueSizes = args.includes('--issue-sizes')
const runsFlag = valueOf('runs')
const KNOWN_FLAGS = ['--quick', '--systems=', '--only=', '--runs=', '--issue-sizes']

function usage(message: string): never {
  process.stderr.write(
    `${message}\nusage: pnpm bench [--quick] [--systems=${SYSTEMS.map((s) => s.name).join(',')}] ` +
      `[--only=${WORKLOADS.map((w) => w.key).join(',')}] [--runs=N] [--issue-sizes]\n`,
  )
  process.exit(2)
}

/**
 * What the default full run trims to fit in 30 minutes on 2 cores, and why;
 * printed in BENCHMARKS.md. Per-run times measured on the 2-core machine the
 * bench was written on (3 systems): a 100,000-job drain takes 10-65 s per system
 * and configuration, so ~7 min for the drain table; a noisy-neighbour run ~100 s
 * over its four rows (5 min for 3 runs); enqueue ~1.5 min; an idle-cost
 * measurement ~75 s (systems at once); latency ~20 s a run. The scale points
 * (1M-row fills, 1M pending) and the 100k churn are estimated at ~8 and ~4 min.
 * Together ~28 min; each table in BENCHMARKS.md records its actual time.
 */
const FULL_RUN_NOTES = [
  'The default full run is planned to fit in 30 minutes on 2 cores. Medians of 3 runs everywhere do not: about 70 minutes here ' +
    'even at the trimmed sizes below (estimated from per-run times measured on this machine). So it takes medians of 3 runs where ' +
    'a run is short (noisy neighbour, pick-up latency) and one run elsewhere; each table says which. `--runs=3` takes medians of 3 everywhere.',
  'Trimmed sizes (the issue sizes with `--issue-sizes`): the 10M-row history point runs for Backroom only; ' +
    'the pending-backlog points time a drain of 10,000 jobs out of each backlog instead of the whole backlog; ' +
    'churn runs 100,000 jobs under the held snapshot instead of 1,000,000. At the drain rates measured here (about 2,000-3,000 jobs/s ' +
    'for Backroom and pg-boss at 10 slots) those three add roughly an hour.',
]

const failures: string[] = []

// ---------------------------------------------------------------------------
// Main

function selectSystems(): SystemEntry[] {
  const wanted = listOf('systems')
  const unknown = wanted?.filter((w) => !SYSTEMS.some((s) => s.name === w)) ?? []
  if (unknown.length > 0) usage(`unknown system(s) ${unknown.join(', ')}`)
  return SYSTEMS.filter((s) => (wanted ?? DEFAULT_SYSTEMS).includes(s.name))
}

function selectWorkloads(): Suite[] {
  const wanted = listOf('only')
  const unknown = wanted?.filter((w) => !WORKLOADS.some((x) => x.key === w)) ?? []
  if (unknown.length > 0) usage(`unknown workload(s) ${unknown.join(', ')}`)
  return WORKLOADS.filter((w) => !wanted || wanted.includes(w.key))
}

async function main(): Promise<void> {
  const strange = args.filter((a) => !KNOWN_FLAGS.some((f) => (f.endsWith('=') ? a.startsWith(f) : a === f)))
  if (strange.length > 0) usage(`unknown argument(s) ${strange.join(' ')}`)
  if (runsFlag !== undefined && !(Number.isInteger(Number(runsFlag)) && Number(runsFlag) >= 1)) usage(`--runs needs a whole number ≥ 1`)
  const systems = selectSystems()
  const workloads = selectWorkloads()
  const started = performance.now()
  const date = new Date()
  const results: WorkloadResult[] = []
  const ctx: Omit<RunContext, 'runs' | 'step'> = {
    quick,
    systems,
    check(ok, message) {
      if (!ok) failures.push(message)
    },
  }
  const server = serverUrl()
  // Read first: an unreachable server fails here, with its address, before any workload.
  let settings: Record<string, string>
  try {
    settings = await serverSettings(server)
  } catch (error) {
    throw new Error(`cannot reach PostgreSQL at ${new URL(server).host} (BENCH_DATABASE_URL, TEST_DATABASE_URL or DATABASE_URL): ${(error as Error).message}`)
  }
  process.stdout.write(
    `${quick ? 'Quick run (CI smoke check: correctness only)' : 'Full run'}: ${workloads.map((w) => w.key).join(', ')} ` +
      `on ${systems.map((s) => s.name).join(', ')}; server ${new URL(server).host}\n`,
  )
  for (const [i, w] of workloads.entries()) {
    const step = `[${i + 1}/${workloads.length}] ${w.key}`
    progressContext(step)
    const t0 = performance.now()
    const tables = await w.run({ ...ctx, step }, { issueSizes, runs: runsFlag === undefined ? null : Number(runsFlag) })
    const durationMs = performance.now() - t0
    progressDone()
    for (const t of tables) process.stdout.write(`\n${renderWorkload(t)}\n`)
    process.stdout.write(`\n(${w.key}: ${(durationMs / 1000).toFixed(0)} s)\n`)
    // The workload's time goes under its last table.
    results.push(...tables.map((t, k) => (k === tables.length - 1 ? { ...t, durationMs } : t)))
  }
  const targets = renderTargets(results)
  if (targets) process.stdout.write(`\n### Targets${quick ? ' (informational: a quick run never fails on timings)' : ''}\n\n${targets}\n`)
  process.stdout.write(
    `\nPostgreSQL ${settings.server_version}; fsync=${settings.fsync}; synchronous_commit=${settings.synchronous_commit}; shared_buffers=${settings.shared_buffers}\n`,
  )
  if (!quick) {
    const path = await writeReport(
      {
        date,
        command: ['pnpm bench', ...args].join(' '),
        quick,
        postgres: settings,
        durationMs: performance.now() - started,
        failures,
        notes: [
          `Systems: ${systems.map((s) => `\`${s.name}\``).join(', ')}. Peer settings and how each adapter counts completed jobs: the file comments of \`bench/src/systems/*.ts\`.`,
          'Every measurement runs on a fresh database; with several runs, run-major (run 1 of every system, then run 2, ...). The number of runs is under each table.',
          ...(issueSizes ? ['Run with `--issue-sizes`: the issue\'s sizes throughout.'] : FULL_RUN_NOTES),
          ...(runsFlag ? [`Run with \`--runs=${runsFlag}\`: ${runsFlag} runs per measurement everywhere.`] : []),
        ],
      },
      results,
    )
    process.stdout.write(`\nwrote ${path}\n`)
  }
  process.stdout.write(`\ntook ${((performance.now() - started) / 1000).toFixed(0)} s\n`)
  if (failures.length > 0) {
    process.stderr.write(`\nCORRECTNESS FAILURES (${failures.length}):\n${failures.map((f) => `- ${f}`).join('\n')}\n`)
    process.exit(1)
  }
  process.stdout.write(quick ? 'all correctness checks passed\n' : '')
}

process.once('SIGINT', () => {
  progressDone()
  process.stderr.write('\ninterrupted: dropping scratch databases\n')
  void dropLiveDatabases().finally(() => process.exit(130))
})

try {
  await main()
  // Peers' pools and timers may linger after close(); the run is over.
  process.exit(process.exitCode ?? 0)
} catch (error) {
  progressDone()
  process.stderr.write(`\nbench failed: ${(error as Error).message}\n${(error as Error).stack ?? ''}\n`)
  await dropLiveDatabases()
  process.exit(1)
}
