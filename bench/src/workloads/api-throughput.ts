// The `api` workload: enqueue throughput of the HTTP API as deployed. One API
// process (apps/api/src/server.ts, as `pnpm start:api` runs it) is started on
// a fresh database; autocannon, in this process, sends it `POST /v1/jobs` or
// `POST /v1/jobs/batch` over HTTP with a real platform key.
import { spawn } from 'node:child_process'
import { closeSync, openSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { connect, createApiKey, migrate } from '@backroom/queue-core'
import { progress } from '../progress.ts'

const SERVER = fileURLToPath(new URL('../../../apps/api/src/server.ts', import.meta.url))

/** Stores the jobs are spread over (`store-0` … `store-99`), as in the other suites. */
export const API_STORES = 100
/** The API's DB_POOL_MAX here (its default, set so the notes stay true if the default moves). */
export const API_DB_POOL_MAX = 10
/**
 * API_STORE_RATE of the API under test: far above what one process can enqueue
 * (measured: a few thousand jobs/s in all), so the per-store rate limit never
 * binds and every request is answered 2xx. The limiter still runs on every request.
 */
export const API_STORE_RATE_UNBOUND = 10_000_000

// autocannon ships no types: the little of its API used here, loaded through
// require because a `declare module` cannot augment an untyped JS package.
interface AutocannonResult {
  readonly '2xx': number
  readonly non2xx: number
  readonly errors: number
  readonly timeouts: number
  /** Latency in ms. */
  readonly latency: { readonly p50: number; readonly p99: number }
  readonly statusCodeStats: Readonly<Record<string, { readonly count: number }>>
}
interface AutocannonRequest {
  method?: string
  path?: string
  body?: string
  headers?: Record<string, string>
}
interface AutocannonOptions {
  readonly url: string
  readonly connections: number
  /** Requests in all; the run ends once every one is answered. */
  readonly amount: number
  /** Seconds before a request counts as timed out. */
  readonly timeout: number
  readonly method: string
  readonly headers: Readonly<Record<string, string>>
  readonly body?: string
  readonly requests?: ReadonlyArray<{ readonly path?: string; readonly setupRequest?: (req: AutocannonRequest) => AutocannonRequest }>
}
interface AutocannonInstance extends PromiseLike<AutocannonResult> {
  /** Every second while running. */
  on(event: 'tick', listener: () => void): this
  on(event: 'response', listener: () => void): this
  stop(): void
}
const autocannon = createRequire(import.meta.url)('autocannon') as (options: AutocannonOptions) => AutocannonInstance

/** One load: `requests` requests of `jobsPerRequest` jobs (1: `POST /v1/jobs`; more: a batch) over `connections`. */
export interface ApiLoad {
  readonly jobsPerRequest: number
  readonly requests: number
  readonly connections: number
  /**
   * Who sends (default one platform key naming each job's store). `store`:
   * single enqueues only, each with the key of its store (one per store),
   * so the work runs in the row-secured store scope.
   */
  readonly keys?: 'platform' | 'store'
}

/** What one run measured. */
export interface ApiThroughputRun {
  readonly requests: number
  readonly ok: number
  /** Answers other than 2xx, and requests with no answer (connection errors, timeouts). */
  readonly non2xx: number
  readonly errors: number
  /** Count per status code, for the failure message. */
  readonly statusCodes: Readonly<Record<string, number>>
  readonly ms: number
  readonly requestsPerSec: number
  readonly jobsPerSec: number
  readonly p50Ms: number
  readonly p99Ms: number
  /** Rows of `jobs` afterwards, and what the 2xx answers promised: equal when nothing was lost or written twice. */
  readonly jobsInDb: number
  readonly jobsExpected: number
  readonly storesInDb: number
}

/** A port free on 127.0.0.1 now (the API takes no PORT=0). */
async function freePort(): Promise<number> {
  const probe = createServer()
  await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(0, '127.0.0.1', resolve))
  const { port } = probe.address() as { port: number }
  await new Promise((resolve) => probe.close(resolve))
  return port
}

/** Job `i` of the load: system.canary for store `i mod 100`. */
const jobBody = (i: number) => ({ type: 'system.canary', storeId: `store-${i % API_STORES}`, payload: {} })
/** The same job sent with its store's own key, which implies the store. */
const storeJobBody = () => ({ type: 'system.canary', payload: {} })

/**
 * Enqueues through the API on a fresh database at `url`: starts the API
 * process, sends `load` with autocannon, then counts the jobs written.
 * Throws when the API does not become ready (with its last log lines).
 */
export async function apiThroughput(opts: { url: string; load: ApiLoad; label: string; timeoutMs: number }): Promise<ApiThroughputRun> {
  const { load } = opts
  const port = await freePort()
  // Idempotent; the API migrates at start too, but the key below needs the tables first.
  await migrate({ connectionString: opts.url })
  const db = connect({ connectionString: opts.url, max: 1 })
  // The API logs at info as deployed, to a file: piping it here would charge
  // its log volume to the load generator's CPU.
  const logPath = join(tmpdir(), `backroom-bench-api-${process.pid}-${Date.now().toString(36)}.log`)
  const logFd = openSync(logPath, 'w')
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: opts.url,
    PORT: String(port),
    LOG_LEVEL: 'info',
    DB_POOL_MAX: String(API_DB_POOL_MAX),
    API_STORE_RATE: String(API_STORE_RATE_UNBOUND),
  }
  // In-process rate limiting and no drain route: only the enqueue path is measured.
  delete env.REDIS_URL
  delete env.CRON_SECRET
  const child = spawn(process.execPath, ['--conditions=@backroom/source', '--import', 'tsx', SERVER], { env, stdio: ['ignore', logFd, logFd] })
  closeSync(logFd)
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()))
  const origin = `http://127.0.0.1:${port}`
  try {
    progress(`${opts.label}: starting the API`)
    await waitReady(origin, child, logPath)
    const { key } = await createApiKey(db.kysely, { storeId: null, label: 'bench' })
    const single = load.jobsPerRequest === 1
    const byStore = load.keys === 'store'
    if (byStore && !single) throw new Error('store keys are measured on single enqueues only')
    const storeKeys: string[] = []
    if (byStore) for (let i = 0; i < API_STORES; i++) storeKeys.push((await createApiKey(db.kysely, { storeId: `store-${i}`, label: 'bench' })).key)
    // Single enqueues rotate over the stores, one prepared body per store; a
    // batch already spans every store, so one body serves every request.
    const bodies = Array.from({ length: API_STORES }, (_, i) => JSON.stringify(byStore ? storeJobBody() : jobBody(i)))
    const storeHeaders = storeKeys.map((k) => ({ authorization: `Bearer ${k}`, 'content-type': 'application/json' }))
    let sent = 0
    const options: AutocannonOptions = {
      url: origin,
      connections: load.connections,
      amount: load.requests,
      timeout: 60,
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      ...(single
        ? {
            requests: [
              {
                path: '/v1/jobs',
                setupRequest: (req: AutocannonRequest) => {
                  const i = sent++ % API_STORES
                  return { ...req, body: bodies[i], ...(byStore ? { headers: storeHeaders[i] } : {}) }
                },
              },
            ],
          }
        : {
            requests: [{ path: '/v1/jobs/batch' }],
            body: JSON.stringify({ jobs: Array.from({ length: load.jobsPerRequest }, (_, i) => jobBody(i)) }),
          }),
    }
    const started = performance.now()
    const instance = autocannon(options)
    let answered = 0
    instance.on('response', () => answered++)
    instance.on('tick', () => {
      progress(`${opts.label}: ${answered.toLocaleString('en-US')}/${load.requests.toLocaleString('en-US')} requests`)
    })
    // A stopped run answers fewer than all requests, which the suite reports as non-2xx.
    const guard = setTimeout(() => instance.stop(), opts.timeoutMs)
    const result = await Promise.resolve(instance).finally(() => clearTimeout(guard))
    const ms = performance.now() - started
    const { rows } = await db.pool.query<{ jobs: number; stores: number }>(
      'select count(*)::int as jobs, count(distinct store_id)::int as stores from jobs',
    )
    progress(`${opts.label}: stopping the API`)
    child.kill('SIGTERM')
    await exited
    const ok = result['2xx']
    return {
      requests: load.requests,
      ok,
      non2xx: load.requests - ok,
      errors: result.errors + result.timeouts,
      statusCodes: Object.fromEntries(Object.entries(result.statusCodeStats).map(([code, s]) => [code, Number(s.count)])),
      ms,
      requestsPerSec: ok / (ms / 1000),
      jobsPerSec: (ok * load.jobsPerRequest) / (ms / 1000),
      p50Ms: result.latency.p50,
      p99Ms: result.latency.p99,
      jobsInDb: rows[0]?.jobs ?? 0,
      jobsExpected: ok * load.jobsPerRequest,
      storesInDb: rows[0]?.stores ?? 0,
    }
  } finally {
    child.kill('SIGKILL')
    await exited
    await db.close()
    rmSync(logPath, { force: true })
  }
}

/** Polls /readyz until the API answers 200 (migrated, database reachable). */
async function waitReady(origin: string, child: ReturnType<typeof spawn>, logPath: string): Promise<void> {
  const deadline = Date.now() + 60_000
  for (;;) {
    const ready = await fetch(`${origin}/readyz`).then((r) => r.ok, () => false)
    if (ready) return
    if (child.exitCode !== null || Date.now() > deadline) {
      const tail = readFileSync(logPath, 'utf8').trim().split('\n').slice(-10).join('\n')
      throw new Error(`API process ${child.exitCode === null ? 'not ready within 60 s' : `exited with ${child.exitCode}`}; its last log lines:\n${tail}`)
    }
    await new Promise((r) => setTimeout(r, 100))
  }
}
