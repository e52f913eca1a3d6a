/**
 * `pnpm bench:soak -- --minutes=120`: the soak. Starts one API and two
 * worker processes on a fresh database, enqueues a steady mix of jobs through
 * the API for `--minutes`, samples memory, dead tuples, pick-up latency and
 * throughput every window, drains, stops the services with SIGTERM, and
 * writes the "Soak" section of BENCHMARKS.md, bench/results/soak.json and
 * bench/results/soak.svg. Not part of `pnpm test` or CI: it runs for hours.
 *
 * Options: see parseSoakOptions(). Ctrl-C (or SIGTERM) ends the load early
 * and still writes the report, flagged as interrupted.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { writeMarkedSection } from '../../../scripts/lib/write-marked-section.ts'
import { withoutNewSignalHandlers } from '../../../scripts/lib/open-database.ts'
import { startEmbeddedPostgres } from '@backroom/queue-core/dev'
import { serverSettings } from '../database.ts'
import { FAKE_DEEPL_KEY, startFakeDeepl, type FakeDeepl } from './fake-deepl.ts'
import { startLoad } from './load-generator.ts'
import { parseSoakOptions, type SoakOptions } from './options.ts'
import { SOAK_MARK_BEGIN, SOAK_MARK_END, progressLine, soakMarkdown, verdictLines, type SoakRun } from './report.ts'
import { pickupLatency, rssMb, sampleDatabase, type SoakSample } from './sampler.ts'
import { SOAK_WORKERS, startSoakSystem } from './services.ts'
import { soakSvg } from './svg-plot.ts'
import { driftWindowMinutes, judge, warmupMinutes, type Check } from './verdict.ts'

const root = fileURLToPath(new URL('../../../', import.meta.url))
/** Paths as written into BENCHMARKS.md (relative to the repository root). */
const PLOT = 'bench/results/soak.svg'
const JSON_OUT = 'bench/results/soak.json'
/** How long the drain after the load may take: the longest delay (30 s) and a retry's backoff, with room. */
const DRAIN_LIMIT_MS = 180_000

const log = (line: string) => process.stdout.write(`${line}\n`)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)))

async function main(): Promise<number> {
  const options = parseSoakOptions(process.argv.slice(2))
  log(`soak: ${options.minutes} min at ${options.rate} jobs/s over ${options.stores} stores, ${options.sampleSeconds} s windows`)
  const embedded = options.embedded ? await withoutNewSignalHandlers(() => startEmbeddedPostgres()) : null
  if (embedded) log('soak: on an embedded PostgreSQL of its own (default settings, fsync off)')
  try {
    return await soak(options, embedded?.url ?? options.serverUrl)
  } finally {
    await embedded?.stop()
  }
}

async function soak(options: SoakOptions, serverUrl: string): Promise<number> {
  const settings = { ...(await serverSettings(serverUrl)), autovacuum: await setting(serverUrl, 'autovacuum') }
  if (settings.autovacuum !== 'on') log('soak: autovacuum is off on this server, so dead tuples only shrink when something vacuums by hand (see --embedded)')
  const deepl = await startFakeDeepl()
  try {
    return await soakWith(options, serverUrl, settings, deepl)
  } finally {
    await deepl.close()
  }
}

async function soakWith(options: SoakOptions, serverUrl: string, settings: Record<string, string>, deepl: FakeDeepl): Promise<number> {
  const system = await startSoakSystem(serverUrl, {
    DEEPL_API_URL: deepl.url,
    DEEPL_API_KEY: FAKE_DEEPL_KEY,
    // The fake listens on loopback, which the handlers' URL guard refuses unless allowed.
    HANDLER_URL_ALLOWLIST: '127.0.0.1/32',
  })
  log(`soak: database ${system.databaseName}, API ${system.origin}, services' logs in ${system.logDir}`)
  const pool = new pg.Pool({ connectionString: system.databaseUrl, max: 2 })

  let interrupted = false
  const stopEarly = () => {
    interrupted = true
  }
  process.once('SIGINT', stopEarly)
  process.once('SIGTERM', stopEarly)

  const samples: SoakSample[] = []
  const extraChecks: Check[] = []
  const startedAt = new Date()
  const load = startLoad({ origin: system.origin, key: system.key, rate: options.rate, stores: options.stores })
  const t0 = Date.now()
  const endAt = t0 + options.minutes * 60_000
  let windowStart = new Date(t0)
  try {
    for (let k = 1; !interrupted; k++) {
      const due = Math.min(endAt, t0 + k * options.sampleSeconds * 1000)
      while (!interrupted && Date.now() < due) await sleep(Math.min(1000, due - Date.now()))
      const windowEnd = new Date()
      const counts = load.take()
      const rss = Object.fromEntries(system.services.map((s) => [s.name, rssMb(s.child.pid)]))
      const db = await sampleDatabase(pool, windowStart, windowEnd)
      const sample: SoakSample = {
        minute: Math.round(((windowEnd.getTime() - t0) / 60_000) * 100) / 100,
        at: windowEnd.toISOString(),
        rssMb: rss,
        ...db,
        enqueued: counts.accepted,
        rejected: Object.values(counts.rejected).reduce((a, b) => a + b, 0),
      }
      samples.push(sample)
      log(progressLine(sample))
      windowStart = windowEnd
      const dead = system.services.find((s) => !s.running)
      if (dead) {
        log(`soak: ${dead.name} exited during the run; stopping`)
        extraChecks.push({ name: 'services up', pass: false, detail: `${dead.name} exited during the run (see its log)` })
        break
      }
      if (windowEnd.getTime() >= endAt) break
    }
  } finally {
    await load.stop()
  }
  const loadEnd = Date.now()
  const loadedMinutes = (loadEnd - t0) / 60_000

  // Drain: every accepted job should reach history (delayed ones within 30 s, retries after their backoff).
  log('soak: load stopped; draining')
  const drainDeadline = Date.now() + DRAIN_LIMIT_MS
  let left = Number.POSITIVE_INFINITY
  while (Date.now() < drainDeadline) {
    left = (await pool.query<{ n: number }>('select count(*)::int as n from jobs')).rows[0]?.n ?? 0
    if (left === 0 || system.services.every((s) => !s.running)) break
    await sleep(1000)
  }
  const history = (
    await pool.query<{ completed: number; failed: number }>(
      `select count(*) filter (where state = 'completed')::int as completed, count(*) filter (where state = 'failed')::int as failed from job_history`,
    )
  ).rows[0] ?? { completed: 0, failed: 0 }
  const totals = { byKind: load.totalByKind, accepted: load.totalAccepted, rejected: load.totalRejected, completed: history.completed, failed: history.failed, left }
  const finished = history.completed + history.failed
  const failing = load.totalByKind.failing
  extraChecks.push({
    name: 'outcomes',
    pass: history.failed === failing,
    detail: `${history.failed} failed in history, ${failing} enqueued to fail (every other job should complete); fake DeepL answered ${deepl.counts.answered} requests, refused ${deepl.counts.refused}`,
  })
  extraChecks.push({
    name: 'nothing lost',
    pass: finished === totals.accepted && left === 0 && totals.rejected === 0,
    detail: `${totals.accepted} accepted (${totals.rejected} rejected) = ${finished} in history + ${left} left in jobs after the drain`,
  })

  // p99 drift windows, measured over every job in them.
  const warmupEnd = t0 + warmupMinutes(options.minutes) * 60_000
  const w = driftWindowMinutes(options.minutes) * 60_000
  const first = await pickupLatency(pool, new Date(warmupEnd), new Date(Math.min(loadEnd, warmupEnd + w)))
  const last = await pickupLatency(pool, new Date(Math.max(warmupEnd, loadEnd - w)), new Date(loadEnd))
  const verdict = judge({ minutes: options.minutes, rate: options.rate, samples, firstP99Ms: first.p99Ms, lastP99Ms: last.p99Ms, autovacuum: settings.autovacuum === 'on' })
  await pool.end()

  log('soak: stopping the services (SIGTERM)')
  const codes = await system.stop()
  extraChecks.push({
    name: 'clean stop',
    pass: Object.values(codes).every((c) => c === 0),
    detail: `exit codes after SIGTERM: ${Object.entries(codes).map(([k, c]) => `${k} ${c}`).join(', ')}`,
  })

  const run: SoakRun = {
    startedAt: startedAt.toISOString().replace(/\.\d+Z$/, 'Z'),
    minutes: options.minutes,
    loadedMinutes,
    interrupted,
    rate: options.rate,
    stores: options.stores,
    sampleSeconds: options.sampleSeconds,
    workers: SOAK_WORKERS,
    settings,
    server: options.embedded ? 'an embedded PostgreSQL started by the soak (fsync off)' : 'the given PostgreSQL server',
    samples,
    verdict,
    extraChecks,
    totals,
  }
  for (const line of verdictLines(run)) log(line)
  if (options.write) {
    mkdirSync(path.join(root, 'bench/results'), { recursive: true })
    writeFileSync(path.join(root, JSON_OUT), `${JSON.stringify(run, null, 2)}\n`)
    const caption = `Backroom soak ${run.startedAt}: ${options.rate} jobs/s, ${loadedMinutes.toFixed(1)} min, 1 API + ${SOAK_WORKERS} workers (shared 2-core machine)`
    writeFileSync(path.join(root, PLOT), soakSvg(samples, caption))
    writeMarkedSection({
      file: path.join(root, 'BENCHMARKS.md'),
      begin: SOAK_MARK_BEGIN,
      end: SOAK_MARK_END,
      heading: 'Soak',
      body: soakMarkdown(run, PLOT, JSON_OUT),
    })
    log(`soak: wrote BENCHMARKS.md (Soak), ${JSON_OUT}, ${PLOT}`)
  }
  await system.dispose(options.keep && !options.embedded)
  if (options.keep && !options.embedded) log(`soak: kept database ${system.databaseName} and logs in ${system.logDir}`)
  const judged = !verdict.tooShort && !interrupted
  const ok = extraChecks.every((c) => c.pass) && (verdict.pass || !judged)
  return ok ? 0 : 1
}

/** One setting of the server as SHOW prints it. */
async function setting(url: string, name: string): Promise<string> {
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  try {
    return (await c.query<{ v: string }>('select current_setting($1) as v', [name])).rows[0]?.v ?? '?'
  } finally {
    await c.end()
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error instanceof Error ? (error.stack ?? error.message) : error)
    process.exit(1)
  },
)
