import { serverUrl } from '../database.ts'

/** What one `pnpm bench:soak` run does. */
export interface SoakOptions {
  /** Length of the loaded run, in minutes. */
  readonly minutes: number
  /** Jobs enqueued per second through the API. */
  readonly rate: number
  /** Stores the jobs are spread over. */
  readonly stores: number
  /** Seconds per sample window (60 for real runs; shorter for a quick check). */
  readonly sampleSeconds: number
  /** The server the soak creates its database on. May hold a password: never print it. */
  readonly serverUrl: string
  /**
   * Run on a throw-away PostgreSQL of the soak's own (embedded, default
   * settings but fsync off) instead of the given server: for servers where
   * autovacuum is off, which would make the dead-tuple check meaningless.
   */
  readonly embedded: boolean
  /** Keep the database (and the services' log files) afterwards. */
  readonly keep: boolean
  /** Write BENCHMARKS.md and bench/results (false: print only). */
  readonly write: boolean
}

/** Runs shorter than this get a verdict, flagged as too short to judge. */
export const MIN_JUDGED_MINUTES = 30

/**
 * Parses `--minutes=120 --rate=20 --stores=50 --sample-seconds=60
 * --database-url=… --embedded --keep --no-write`. A bare `--` (pnpm passes it through)
 * is ignored; anything else unknown is an error, so a typo does not run two
 * hours with the wrong settings.
 */
export function parseSoakOptions(argv: ReadonlyArray<string>, env: NodeJS.ProcessEnv = process.env): SoakOptions {
  const values = new Map<string, string>()
  const flags = new Set<string>()
  for (const arg of argv) {
    if (arg === '--') continue
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(arg)
    if (!m) throw new Error(`unexpected argument ${JSON.stringify(arg)}`)
    const [, name, value] = m as unknown as [string, string, string | undefined]
    if (value === undefined) flags.add(name)
    else values.set(name, value)
  }
  const known = new Set(['minutes', 'rate', 'stores', 'sample-seconds', 'database-url', 'embedded', 'keep', 'no-write'])
  for (const name of [...values.keys(), ...flags]) if (!known.has(name)) throw new Error(`unknown option --${name}`)
  const num = (name: string, fallback: number, min: number): number => {
    const raw = values.get(name)
    if (raw === undefined) return fallback
    const v = Number(raw)
    if (!Number.isFinite(v) || v < min) throw new Error(`--${name} must be a number >= ${min}`)
    return v
  }
  const minutes = num('minutes', 120, 1)
  return {
    minutes,
    rate: num('rate', 20, 0.1),
    stores: Math.round(num('stores', 50, 1)),
    // A quick run still gets enough points for a plot and a (flagged) verdict.
    sampleSeconds: num('sample-seconds', minutes >= MIN_JUDGED_MINUTES ? 60 : 15, 5),
    serverUrl: values.get('database-url') || (env.TEST_DATABASE_URL ? env.TEST_DATABASE_URL : serverUrl()),
    embedded: flags.has('embedded'),
    keep: flags.has('keep'),
    write: !flags.has('no-write'),
  }
}
