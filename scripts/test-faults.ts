/**
 * `pnpm test:faults`: the fault suite at full length. The same test files
 * run in `pnpm test` in a bounded form (FAULTS_SCALE=1, a few seconds per
 * phase); here FAULTS_SCALE (default 10: a minute of connection cuts, close
 * to a minute of blackhole) stretches every phase. Each test records its
 * figures (recordFaultFigures); this script collects them and writes the
 * "Faults" section of BENCHMARKS.md between its markers, so the published
 * figures always come from one run of this command.
 *
 * Usage: `pnpm test:faults` (TEST_DATABASE_URL as for `pnpm test`),
 * `FAULTS_SCALE=3 pnpm test:faults`, `pnpm test:faults --no-write` to leave
 * BENCHMARKS.md alone.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { writeMarkedSection } from './lib/write-marked-section.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

/** Fault test files per package, in the order they run. */
const SUITES: ReadonlyArray<{ readonly pkg: string; readonly files: ReadonlyArray<string> }> = [
  {
    pkg: 'packages/queue-core',
    files: [
      'test/connection-faults.test.ts',
      'test/database-restart.test.ts',
      'test/frozen-worker.test.ts',
      'test/leader-lease.test.ts',
      'test/outcome-write-outage.test.ts',
      'test/outcome-writes.test.ts',
      'test/rescue-backoff.test.ts',
      'test/rescue-lag.test.ts',
      'test/run-timeout.test.ts',
      'test/poison-jobs.test.ts',
      'test/sigkill-rescue.test.ts',
    ],
  },
  { pkg: 'apps/worker', files: ['test/shutdown-database-down.test.ts'] },
  { pkg: 'apps/api', files: ['test/database-unavailable.test.ts'] },
]

const MARK_BEGIN = '<!-- faults:begin (written by pnpm test:faults) -->'
const MARK_END = '<!-- faults:end -->'

const scale = process.env.FAULTS_SCALE ?? '10'
const write = !process.argv.includes('--no-write')
const dir = mkdtempSync(path.join(tmpdir(), 'backroom-faults-'))
const report = path.join(dir, 'figures.jsonl')
let failed = false
const started = Date.now()

for (const [i, suite] of SUITES.entries()) {
  const files = suite.files.filter((f) => existsSync(path.join(root, suite.pkg, f)))
  if (files.length === 0) continue
  process.stdout.write(`[${i + 1}/${SUITES.length}] ${suite.pkg}: ${files.length} fault test files at FAULTS_SCALE=${scale}\n`)
  const run = spawnSync('npx', ['vitest', 'run', ...files], {
    cwd: path.join(root, suite.pkg),
    stdio: 'inherit',
    env: { ...process.env, FAULTS_SCALE: scale, FAULTS_REPORT: report },
  })
  if (run.status !== 0) failed = true
}

const lines = existsSync(report)
  ? readFileSync(report, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { suite: string; at: string; scale: number; figures: Record<string, unknown> })
  : []
rmSync(dir, { recursive: true, force: true })

/** The issue's figures with a bound, judged from what the tests recorded. */
const TARGETS: ReadonlyArray<{ readonly suite: string; readonly name: string; readonly met: (f: Record<string, unknown>) => boolean; readonly shown: (f: Record<string, unknown>) => string }> = [
  {
    suite: 'connection cuts and blackhole',
    name: 'Throughput back to ≥ 90 % of the rate before the faults within 30 s of the last one',
    met: (f) => typeof f.at90PctMs === 'number' && f.at90PctMs <= 30_000,
    shown: (f) => (typeof f.at90PctMs === 'number' ? `a 3 s window at 90 % began ${f.at90PctMs} ms after healing` : 'no 3 s window at 90 % within 30 s'),
  },
  {
    suite: 'database restart',
    name: 'Throughput back to ≥ 90 % of the rate before within 30 s of each restart',
    met: (f) => Array.isArray(f.restarts) && f.restarts.every((r: { at90PctMs?: unknown }) => typeof r.at90PctMs === 'number' && r.at90PctMs <= 30_000),
    shown: (f) =>
      Array.isArray(f.restarts) ? f.restarts.map((r: { mode?: string; at90PctMs?: unknown }) => `${r.mode}: ${typeof r.at90PctMs === 'number' ? `${r.at90PctMs} ms` : 'none within 30 s'}`).join(', ') : 'no figures',
  },
]
const targetLines = TARGETS.flatMap((target) =>
  lines.filter((l) => l.suite === target.suite).map((l) => `- ${target.name}: ${target.shown(l.figures)}: ${target.met(l.figures) ? 'met' : '**not met**'}.`),
)

const minutes = ((Date.now() - started) / 60_000).toFixed(1)
const table = [
  `Run of \`pnpm test:faults\` at FAULTS_SCALE=${scale} (${minutes} min, ${failed ? 'with failures' : 'all passed'}).`,
  '',
  '| Suite | Figures |',
  '| --- | --- |',
  ...lines.map((l) => `| ${l.suite} | ${Object.entries(l.figures).map(([k, v]) => `${k} ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join('; ')} |`),
  ...(targetLines.length > 0 ? ['', ...targetLines] : []),
].join('\n')
process.stdout.write(`\n${table}\n`)

if (write && !failed) {
  writeMarkedSection({ file: path.join(root, 'BENCHMARKS.md'), begin: MARK_BEGIN, end: MARK_END, heading: 'Faults', body: table })
  process.stdout.write('BENCHMARKS.md faults section written\n')
}
process.exit(failed ? 1 : 0)
