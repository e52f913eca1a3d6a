// Turns a finished soak into what it leaves behind: the BENCHMARKS.md
// section (one row per window, the verdict), the raw samples as JSON and the plot.
import type { SoakSample } from './sampler.ts'
import type { Check, Verdict } from './verdict.ts'

/** Markers of the soak's section in BENCHMARKS.md. */
export const SOAK_MARK_BEGIN = '<!-- soak:begin (written by pnpm bench:soak) -->'
export const SOAK_MARK_END = '<!-- soak:end -->'

/** Everything the report needs about one run. */
export interface SoakRun {
  readonly startedAt: string
  readonly minutes: number
  /** Minutes the load actually ran (less than `minutes` when interrupted). */
  readonly loadedMinutes: number
  readonly interrupted: boolean
  readonly rate: number
  readonly stores: number
  readonly sampleSeconds: number
  readonly workers: number
  readonly settings: Readonly<Record<string, string>>
  /** Which server the soak database was on, in words. */
  readonly server: string
  readonly samples: ReadonlyArray<SoakSample>
  readonly verdict: Verdict
  /** Checks outside the verdict's three: nothing lost, clean stop. */
  readonly extraChecks: ReadonlyArray<Check>
  readonly totals: { readonly byKind: Readonly<Record<string, number>>; readonly accepted: number; readonly rejected: number; readonly completed: number; readonly failed: number; readonly left: number }
}

const f1 = (v: number | null) => (v === null ? '–' : v.toFixed(1))
const n = (v: number) => v.toLocaleString('en-US')

/** One progress line for a sample (printed each window). */
export function progressLine(s: SoakSample): string {
  const rss = Object.entries(s.rssMb)
    .map(([k, v]) => `${k} ${f1(v)}`)
    .join(', ')
  return (
    `[soak ${s.minute.toFixed(1)} min] enqueued ${s.enqueued}, finished ${s.completed + s.failed} (${s.failed} failed), ` +
    `pending ${s.pending}, scheduled ${s.scheduled}; p50/p99 pick-up ${f1(s.pickup.p50Ms)}/${f1(s.pickup.p99Ms)} ms; ` +
    `dead/live ${s.deadTuples}/${s.liveTuples} (autovacuums ${s.autovacuumCount}); RSS MB ${rss}`
  )
}

/** The verdict as lines of text. */
export function verdictLines(run: SoakRun): string[] {
  const overall = run.verdict.pass && run.extraChecks.every((c) => c.pass)
  const head = `Verdict: ${overall ? 'PASS' : 'FAIL'}${run.verdict.tooShort ? ` (run of ${run.minutes} min: too short to judge, figures shown for the record)` : ''}${run.interrupted ? ' (interrupted)' : ''}`
  return [head, ...[...run.verdict.checks, ...run.extraChecks].map((c) => `- ${c.pass ? 'pass' : 'FAIL'} · ${c.name}: ${c.detail}`)]
}

/** The Markdown body written between the markers. */
export function soakMarkdown(run: SoakRun, plotPath: string, jsonPath: string): string {
  const names = Object.keys(run.samples[0]?.rssMb ?? {})
  const header = [
    'min',
    ...names.map((k) => `RSS ${k} (MB)`),
    'dead tuples',
    'live tuples',
    'autovacuums',
    'p50 pick-up (ms)',
    'p99 pick-up (ms)',
    'started',
    'enqueued',
    'completed',
    'failed',
    'pending',
    'scheduled',
  ]
  const rows = run.samples.map((s) =>
    [
      s.minute.toFixed(s.minute % 1 === 0 ? 0 : 2),
      ...names.map((k) => f1(s.rssMb[k] ?? null)),
      s.deadTuples,
      s.liveTuples,
      s.autovacuumCount,
      f1(s.pickup.p50Ms),
      f1(s.pickup.p99Ms),
      s.pickup.started,
      s.enqueued,
      s.completed,
      s.failed,
      s.pending,
      s.scheduled,
    ].join(' | '),
  )
  const settings = Object.entries(run.settings)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ')
  const t = run.totals
  return [
    `Run of \`pnpm bench:soak -- --minutes=${run.minutes} --rate=${run.rate}\` started ${run.startedAt}: one API process and ${run.workers} worker ` +
      `processes (as \`pnpm start:api\` / \`pnpm start:worker\` run them, default settings, LOG_LEVEL=info to files), ` +
      `${run.rate} jobs/s enqueued one \`POST /v1/jobs\` at a time over ${run.stores} stores for ${run.loadedMinutes.toFixed(1)} min, ` +
      `${run.sampleSeconds} s sample windows. Mix: \`system.canary\` 20 % no sleep, 50 % sleepMs 1–200, ` +
      '10 % failing retryably with maxAttempts 2 (retried once, then failed), 10 % delayed 1–30 s; 10 % `translation.ui` ' +
      '(3 of 3,000 strings into 2 locales) against a fake DeepL on 127.0.0.1 answering in 5–50 ms. ' +
      `Database on ${run.server}: ${settings}. Taken on a shared 2-core machine (other test runs were using it), so absolute figures are noisy; the trends are the point.`,
    '',
    `Totals: ${n(t.accepted)} jobs accepted by the API (${n(t.rejected)} rejected; by kind ${Object.entries(t.byKind).map(([k, v]) => `${k} ${n(v)}`).join(', ')}), ${n(t.completed)} completed and ${n(t.failed)} failed in history, ${n(t.left)} left in \`jobs\` after the drain.`,
    '',
    ...verdictLines(run),
    '',
    `Rules: memory = least-squares slope of each process's RSS after the warm-up (first ${run.verdict.warmupMinutes} min); ` +
      `dead tuples = max of \`jobs\`.n_dead_tup after warm-up, and its fitted rise over the run; p99 drift = p99 pick-up latency ` +
      `(started_at − max(run_at, created_at), every job in the window) of the last ${run.verdict.driftWindowMinutes} min vs the first ` +
      `${run.verdict.driftWindowMinutes} min after warm-up. Delayed and retried jobs count from their run_at, so the scheduled → pending ` +
      'promotion is part of their pick-up.',
    '',
    `![soak: RSS, dead tuples, pick-up latency and throughput over time](${plotPath})`,
    '',
    `Raw samples: \`${jsonPath}\`.`,
    '',
    `| ${header.join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${r} |`),
  ].join('\n')
}
