import {
  createWorkerPool,
  enqueue,
  getJob,
  type EnqueueSpec,
  type Handler,
  type Job,
  type WorkerPool,
} from '@backroom/queue-core'
import { useTestDatabase, waitFor } from '@backroom/queue-core/testing'
import { pino, type Logger } from 'pino'
import { afterAll, beforeAll } from 'vitest'
import { handlerDeps, type HandlerDeps } from '../lib/deps.ts'
import type { HostResolver } from '../lib/host-resolver.ts'
import { migrateShop } from '../lib/shop-migrations.ts'
import { URL_ALLOWLIST_ENV } from '../lib/url-allowlist.ts'
import { FAKE_SERVER_ALLOWLIST } from './fake-server.ts'

/** States a job does not leave. */
const FINISHED = new Set(['completed', 'failed', 'cancelled'])

/** A test file's database (queue and shop tables) and a way to run jobs on it through a real worker pool. */
export interface HandlerTestBed {
  /** The database's connection string (child processes). */
  readonly url: string
  /**
   * Dependencies for building handlers over the test database. The URL
   * guard's allow-list lets fake servers (127.0.0.1) through unless `env`
   * sets HANDLER_URL_ALLOWLIST itself; `options.resolveHost` replaces the
   * system's resolver (a fake DNS server).
   */
  deps(env?: Readonly<Record<string, string | undefined>>, options?: { readonly resolveHost?: HostResolver }): HandlerDeps
  /** Starts a worker pool running `handlers` (stopped after the file's tests, or by `stop()`). */
  startWorker(handlers: ReadonlyArray<Handler>, options?: { concurrency?: number; log?: Logger }): Promise<WorkerPool>
  /** Enqueues one job (store from `spec.storeId`, default `store-1`). */
  enqueue(spec: Partial<EnqueueSpec> & { type: string }): Promise<Job>
  /** Waits until the job is completed, failed or cancelled, and returns it. */
  waitFinished(id: string, timeoutMs?: number): Promise<Job>
  /** Waits until `check(job)` holds for the job (e.g. snoozed back to pending). */
  waitJob(id: string, check: (job: Job) => boolean, timeoutMs?: number): Promise<Job>
}

/**
 * Handler tests' fixture: a fresh database cloned from the queue's migrated
 * template, with the shop's migrations applied on top; worker pools on it with short
 * maintenance intervals, and helpers to enqueue and wait. Pools started here
 * are stopped after the file.
 */
export function useHandlerTestBed(): HandlerTestBed {
  const t = useTestDatabase({ poolMax: 20 })
  const pools: WorkerPool[] = []
  const log = pino({ level: process.env.LOG_LEVEL ?? 'silent' })
  // The shared template holds the queue's tables; the shop's go on this file's copy.
  beforeAll(async () => {
    await migrateShop(t.url)
  })
  afterAll(async () => {
    await Promise.all(pools.map((p) => p.stop()))
  })
  const getJobAnyState = async (id: string) => getJob(t.db.kysely, id)
  return {
    get url() {
      return t.url
    },
    deps: (env = {}, options = {}) => handlerDeps(t.db, withFakeServerAllowlist(env), options),
    async startWorker(handlers, options = {}) {
      const pool = createWorkerPool({
        db: t.db.kysely,
        connectionString: t.url,
        handlers,
        concurrency: options.concurrency ?? 4,
        log: options.log ?? log,
        maintenanceIntervals: { rescueMs: 200, promoteMs: 50, electionMs: 200 },
      })
      pools.push(pool)
      await pool.start()
      return pool
    },
    async enqueue(spec) {
      const { job } = await enqueue(t.db.kysely, { storeId: 'store-1', payload: {}, ...spec })
      return job
    },
    async waitFinished(id, timeoutMs = 30_000) {
      return waitFor(
        async () => {
          const job = await getJobAnyState(id)
          return FINISHED.has(job.state) ? job : null
        },
        { timeoutMs, what: `job ${id} to finish` },
      )
    },
    async waitJob(id, check, timeoutMs = 30_000) {
      return waitFor(
        async () => {
          const job = await getJobAnyState(id)
          return check(job) ? job : null
        },
        { timeoutMs, what: `job ${id} to reach the expected state` },
      )
    },
  }
}

/**
 * `env` as handlers see it in tests: HANDLER_URL_ALLOWLIST defaults to the
 * fake servers' entry. A live view, not a copy: tests change `env` after
 * building handlers (to unset a variable, say) and the handlers see it.
 */
function withFakeServerAllowlist(env: Readonly<Record<string, string | undefined>>): Readonly<Record<string, string | undefined>> {
  const defaulted = (key: string | symbol) => key === URL_ALLOWLIST_ENV && !(key in env)
  return new Proxy(env, {
    get: (target, key) => (defaulted(key) ? FAKE_SERVER_ALLOWLIST : Reflect.get(target, key)),
    has: (target, key) => defaulted(key) || Reflect.has(target, key),
  })
}
