import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'
import type pg from 'pg'
import type { Logger } from 'pino'
import { DEFAULT_TIMEOUT_MS } from '../config.ts'
import { extendLeasesText } from '../db/claim.ts'
import { dedicatedClientConfig } from '../db/connect.ts'
import type { HandlerRegistry } from '../handler.ts'
import type { Fence } from '../types.ts'
import { WATCHDOG_THREAD_SCRIPT } from './watchdog-thread.ts'

/** A lease the watchdog keeps while the event loop is blocked: the fence and the job's type (its timeout). */
export interface WatchedFence extends Fence {
  readonly type: string
}

/** What the watchdog thread is started with (structured-cloned into it). */
export interface WatchdogThreadData {
  /** Int32Array over it: slot 0 is the main loop's tick counter. */
  readonly tick: SharedArrayBuffer
  readonly connectionString: string
  readonly leaseMs: number
  /** How often the thread looks at the tick counter (the main loop ticks as often). */
  readonly checkMs: number
  /** A tick this late means the main loop is blocked: the thread heartbeats from then on, every `heartbeatMs`. */
  readonly lateMs: number
  readonly heartbeatMs: number
  readonly abortGraceMs: number
  /** Handler timeout per job type. */
  readonly timeoutsMs: ReadonlyArray<readonly [string, number]>
  /** The longest handler timeout of the pool: the bound when no job is held. */
  readonly longestTimeoutMs: number
  readonly logLevel: string
  readonly logBindings: Record<string, unknown>
  /** The thread's connection settings (dedicatedClientConfig). */
  readonly clientConfig: pg.ClientConfig
  /** The heartbeat statement (extendLeasesText in db/claim.ts). */
  readonly heartbeat: ReturnType<typeof extendLeasesText>
  readonly pgPath: string
}

/** Messages from the pool to the thread. */
export type WatchdogMessage = { readonly kind: 'fences'; readonly fences: ReadonlyArray<WatchedFence> } | { readonly kind: 'stop' }

/** The main thread's side of a pool's watchdog. */
export interface Watchdog {
  /** Starts the thread and the tick; resolves once the thread is ready (its modules loaded). */
  start(): Promise<void>
  /** Sends the held leases to the thread now (call it before a freshly claimed job's handler starts). */
  sync(): void
  /** Stops the tick and the thread (closing its connection). */
  stop(): Promise<void>
}

/** How long start() waits for the thread to load, and stop() for it to close its connection. */
const THREAD_START_TIMEOUT_MS = 30_000
const THREAD_STOP_TIMEOUT_MS = 2_000

/** Where `pg` is, for the thread's `require` (an eval'd script resolves from the working directory, where pnpm may not have linked it). */
const PG_PATH = createRequire(import.meta.url).resolve('pg')

/**
 * A worker pool's watchdog: a thread of its own (node:worker_threads) that
 * keeps the pool's leases while the main event loop is blocked, and ends the
 * process when the loop stays blocked past any handler's time.
 *
 * The main loop bumps a shared counter (Atomics) every `checkMs` and sends
 * the fences of the jobs it holds (running and prefetched) whenever they
 * change. The thread reads the counter as often. While the loop ticks it
 * does nothing else: no connection, no statement. When the counter has not
 * moved for `lateMs` (a third of the lease, the pool's heartbeat period),
 * a handler is blocking the loop (a synchronous loop, a huge parse): the
 * thread heartbeats the held leases on its own connection, so the job is
 * not rescued and run a second time beside the blocked run, and the other
 * jobs of the process keep theirs. It does so until the block has lasted
 * longer than the longest timeout of the jobs held, plus the abort grace:
 * by then a healthy loop would have given those runs up. The loop is then
 * considered wedged: the thread stops heartbeating, logs one line with the
 * job ids it held and SIGKILLs the process. The leases run out and the
 * rescuer takes the jobs back (a job that wedges every worker it lands on
 * fails with `lease_expired` once its attempts are spent).
 *
 * SIGKILL rather than an exit code: `process.exit()` in a worker thread
 * ends only that thread, and no JavaScript of the main thread (a SIGTERM
 * handler, exit hooks) can run while its loop is blocked. A supervisor
 * (the platform, systemd, `pnpm start`'s) restarts a process killed by a
 * signal as it does any crashed one.
 *
 * A process stopped as a whole (SIGSTOP, a suspended host) stops the
 * thread too; the thread sees its own timer late and starts counting again
 * rather than taking the pause for a block.
 */
export function createWatchdog(args: {
  readonly connectionString: string
  readonly leaseMs: number
  /** The pool's heartbeat period (a third of the lease). */
  readonly heartbeatMs: number
  readonly abortGraceMs: number
  readonly handlers: HandlerRegistry
  readonly log: Logger
  /** The leases the pool holds now: running jobs and prefetched ones. */
  readonly held: () => ReadonlyArray<WatchedFence>
}): Watchdog {
  const log = args.log.child({ component: 'watchdog' })
  const checkMs = Math.max(50, Math.floor(args.heartbeatMs / 4))
  const timeoutsMs = [...args.handlers.values()].map((h) => [h.type, h.timeoutMs ?? DEFAULT_TIMEOUT_MS] as const)
  const tickBuffer = new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT)
  const tick = new Int32Array(tickBuffer)
  let thread: Worker | null = null
  let timer: NodeJS.Timeout | null = null
  /** The fences last sent, as one string, so an unchanged set is not sent again. */
  let sentKey = ''

  const sync = () => {
    if (!thread) return
    const fences = args.held()
    const key = fences.map((f) => `${f.id}:${f.attempt}`).join(',')
    if (key === sentKey) return
    sentKey = key
    thread.postMessage({ kind: 'fences', fences: fences.map((f) => ({ id: f.id, attempt: f.attempt, leaseToken: f.leaseToken, type: f.type })) } satisfies WatchdogMessage)
  }

  return {
    async start() {
      const data: WatchdogThreadData = {
        tick: tickBuffer,
        connectionString: args.connectionString,
        leaseMs: args.leaseMs,
        checkMs,
        lateMs: args.heartbeatMs,
        heartbeatMs: args.heartbeatMs,
        abortGraceMs: args.abortGraceMs,
        timeoutsMs,
        longestTimeoutMs: Math.max(...timeoutsMs.map(([, ms]) => ms)),
        logLevel: args.log.level,
        logBindings: args.log.bindings(),
        clientConfig: dedicatedClientConfig(args.connectionString, 'backroom-watchdog'),
        heartbeat: extendLeasesText(),
        pgPath: PG_PATH,
      }
      const worker = new Worker(WATCHDOG_THREAD_SCRIPT, { eval: true, workerData: data, name: 'backroom-watchdog' })
      await new Promise<void>((resolve, reject) => {
        const timeout = setTimeout(() => fail(new Error('watchdog thread did not start in time')), THREAD_START_TIMEOUT_MS)
        const fail = (err: unknown) => {
          clearTimeout(timeout)
          void worker.terminate()
          reject(err instanceof Error ? err : new Error(String(err)))
        }
        worker.once('error', fail)
        worker.once('exit', (code) => fail(new Error(`watchdog thread exited with code ${code} before it was ready`)))
        worker.once('message', (m: unknown) => {
          if ((m as { kind?: unknown }).kind !== 'ready') return
          clearTimeout(timeout)
          worker.removeAllListeners('error')
          worker.removeAllListeners('exit')
          resolve()
        })
      })
      // From here a failure of the thread costs the protection, not the pool.
      worker.on('error', (err) => log.error({ err }, 'watchdog thread failed'))
      // The thread must never keep a finished process alive.
      worker.unref()
      thread = worker
      timer = setInterval(() => {
        Atomics.add(tick, 0, 1)
        sync()
      }, checkMs)
      timer.unref()
    },
    sync,
    async stop() {
      if (timer) clearInterval(timer)
      timer = null
      const worker = thread
      thread = null
      if (!worker) return
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
      worker.postMessage({ kind: 'stop' } satisfies WatchdogMessage)
      const late = setTimeout(() => void worker.terminate(), THREAD_STOP_TIMEOUT_MS)
      await exited
      clearTimeout(late)
    },
  }
}
