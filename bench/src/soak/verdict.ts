// The soak's pass/fail rules, as pure functions of the samples, so the
// thresholds are stated once, here, and printed with the verdict.
import { MIN_JUDGED_MINUTES } from './options.ts'
import type { SoakSample } from './sampler.ts'

/** A process passes the memory check when its RSS trend is below this many MB per hour. */
export const RSS_SLOPE_LIMIT_MB_PER_HOUR = 20
/**
 * Dead tuples of `jobs` may reach this many times the jobs enqueued per
 * minute. Each job leaves a few dead row versions (claim, heartbeat,
 * completion's delete); `jobs` vacuums at 1 % dead and autovacuum wakes once
 * a minute, so a bounded table holds about one to three minutes of churn.
 * Ten minutes' worth means autovacuum fell behind for good.
 */
export const DEAD_TUPLES_LIMIT_MINUTES_OF_JOBS = 10
/** p99 pick-up latency of the last window may exceed the first by at most this fraction. */
export const P99_DRIFT_LIMIT = 0.2
/** Length of the first and last window compared for p99 drift, in minutes (shorter on short runs). */
export const DRIFT_WINDOW_MINUTES = 10

/** One check's outcome, as printed. */
export interface Check {
  readonly name: string
  readonly pass: boolean
  readonly detail: string
}

/** The whole verdict. */
export interface Verdict {
  readonly pass: boolean
  /** True when the run was too short for the checks to mean much (they are still computed). */
  readonly tooShort: boolean
  readonly warmupMinutes: number
  readonly driftWindowMinutes: number
  readonly checks: ReadonlyArray<Check>
}

/** Least-squares slope of y over x (units of y per unit of x); 0 with fewer than two points. */
export function slope(points: ReadonlyArray<readonly [number, number]>): number {
  const n = points.length
  if (n < 2) return 0
  const mx = points.reduce((s, [x]) => s + x, 0) / n
  const my = points.reduce((s, [, y]) => s + y, 0) / n
  let num = 0
  let den = 0
  for (const [x, y] of points) {
    num += (x - mx) * (y - my)
    den += (x - mx) ** 2
  }
  return den === 0 ? 0 : num / den
}

/** Warm-up: the first 10 % of the run, at least one minute; samples in it are left out of the trends. */
export function warmupMinutes(minutes: number): number {
  return Math.max(1, Math.ceil(minutes * 0.1))
}

/** Length of the first and last window compared for p99 drift: 10 min, less when the run after warm-up is shorter than 20. */
export function driftWindowMinutes(minutes: number): number {
  return Math.min(DRIFT_WINDOW_MINUTES, Math.max(1, Math.floor((minutes - warmupMinutes(minutes)) / 2)))
}

const fmt = (v: number, digits = 1) => v.toFixed(digits)

/**
 * Judges a run of `minutes` at `rate` jobs/s from its samples and the p99
 * pick-up latencies of the first and last window after warm-up (measured
 * over every job in those windows, not averaged from per-minute p99s).
 */
export function judge(args: {
  readonly minutes: number
  readonly rate: number
  readonly samples: ReadonlyArray<SoakSample>
  readonly firstP99Ms: number | null
  readonly lastP99Ms: number | null
  /** The server's autovacuum setting is on (when off, a failed dead-tuple check says so). */
  readonly autovacuum?: boolean
}): Verdict {
  const warmup = warmupMinutes(args.minutes)
  const driftWindow = driftWindowMinutes(args.minutes)
  const steady = args.samples.filter((s) => s.minute > warmup)
  const checks: Check[] = []

  const names = Object.keys(args.samples[0]?.rssMb ?? {})
  for (const name of names) {
    const points = steady.flatMap((s) => (s.rssMb[name] == null ? [] : [[s.minute, s.rssMb[name] as number] as const]))
    const perHour = slope(points) * 60
    const first = points[0]?.[1] ?? 0
    const last = points.at(-1)?.[1] ?? 0
    checks.push({
      name: `memory ${name}`,
      pass: points.length >= 2 && perHour < RSS_SLOPE_LIMIT_MB_PER_HOUR,
      detail: `RSS trend ${perHour >= 0 ? '+' : ''}${fmt(perHour)} MB/h (limit < ${RSS_SLOPE_LIMIT_MB_PER_HOUR} MB/h), ${fmt(first)} → ${fmt(last)} MB after warm-up`,
    })
  }

  const bound = DEAD_TUPLES_LIMIT_MINUTES_OF_JOBS * args.rate * 60
  const dead = steady.map((s) => [s.minute, s.deadTuples] as const)
  const maxDead = Math.max(0, ...dead.map(([, y]) => y))
  const span = (steady.at(-1)?.minute ?? 0) - (steady[0]?.minute ?? 0)
  // A rising trend: the fitted line climbs by more than half the bound over the run.
  const deadRise = slope(dead) * span
  checks.push({
    name: 'dead tuples',
    pass: dead.length >= 2 && maxDead <= bound && deadRise <= bound / 2,
    detail: `max ${maxDead} (limit ${bound} = ${DEAD_TUPLES_LIMIT_MINUTES_OF_JOBS} min of jobs), trend ${deadRise >= 0 ? '+' : ''}${Math.round(deadRise)} over the run (limit +${bound / 2})${args.autovacuum === false ? '; autovacuum is off on this server' : ''}`,
  })

  const { firstP99Ms: a, lastP99Ms: b } = args
  const drift = a !== null && b !== null && a > 0 ? (b - a) / a : null
  checks.push({
    name: 'p99 drift',
    pass: drift !== null && drift <= P99_DRIFT_LIMIT,
    detail:
      drift === null
        ? 'no pick-ups in a window'
        : `p99 pick-up ${fmt(a as number)} ms (first ${driftWindow} min after warm-up) → ${fmt(b as number)} ms (last ${driftWindow} min): ` +
          `${drift >= 0 ? '+' : ''}${fmt(drift * 100)} % (limit ≤ +${P99_DRIFT_LIMIT * 100} %)`,
  })

  return {
    pass: checks.every((c) => c.pass),
    tooShort: args.minutes < MIN_JUDGED_MINUTES,
    warmupMinutes: warmup,
    driftWindowMinutes: driftWindow,
    checks,
  }
}
