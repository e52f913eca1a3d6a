// Steady enqueue load through the API over HTTP: one `POST /v1/jobs` per job,
// paced against the clock (not against answers), so a slow API shows up as
// backlog and latency rather than as a lower offered rate.
import { soakJob, type SoakJobKind } from './job-mix.ts'

/** Requests in flight at most; beyond that, due jobs wait (and are counted late, not dropped). */
const MAX_IN_FLIGHT = 64
/** How often the pacer wakes up. */
const TICK_MS = 50

/** Counters since the last take(). */
export interface LoadCounts {
  /** Answered 2xx: the API promised these jobs. */
  accepted: number
  /** Answered non-2xx (by status) or not at all ("error"). */
  rejected: Record<string, number>
  byKind: Record<SoakJobKind, number>
}

/** A running load generator. */
export interface LoadGenerator {
  /** Counters since the previous call (resets them). */
  take(): LoadCounts
  /** Accepted jobs over the whole run. */
  readonly totalAccepted: number
  readonly totalRejected: number
  /** Accepted jobs over the whole run, by kind. */
  readonly totalByKind: Readonly<Record<SoakJobKind, number>>
  /** Stops pacing and waits for the requests in flight. */
  stop(): Promise<void>
}

const emptyCounts = (): LoadCounts => ({ accepted: 0, rejected: {}, byKind: emptyKinds() })
const emptyKinds = (): Record<SoakJobKind, number> => ({ quick: 0, sleepy: 0, failing: 0, delayed: 0, translation: 0 })

/** Starts enqueueing `rate` jobs a second over `stores` stores through the API at `origin`. */
export function startLoad(args: { readonly origin: string; readonly key: string; readonly rate: number; readonly stores: number }): LoadGenerator {
  const started = performance.now()
  let sent = 0
  let inFlight = 0
  let totalAccepted = 0
  let totalRejected = 0
  let counts = emptyCounts()
  const totalByKind = emptyKinds()
  const pending = new Set<Promise<void>>()
  const headers = { authorization: `Bearer ${args.key}`, 'content-type': 'application/json' }

  const send = (i: number) => {
    const { kind, body } = soakJob(i, args.stores, Math.random)
    inFlight++
    const p = fetch(`${args.origin}/v1/jobs`, { method: 'POST', headers, body: JSON.stringify(body), signal: AbortSignal.timeout(30_000) })
      .then(
        async (res) => {
          await res.arrayBuffer()
          if (res.ok) {
            counts.accepted++
            counts.byKind[kind]++
            totalByKind[kind]++
            totalAccepted++
          } else {
            counts.rejected[String(res.status)] = (counts.rejected[String(res.status)] ?? 0) + 1
            totalRejected++
          }
        },
        () => {
          counts.rejected.error = (counts.rejected.error ?? 0) + 1
          totalRejected++
        },
      )
      .finally(() => {
        inFlight--
        pending.delete(p)
      })
    pending.add(p)
  }

  const timer = setInterval(() => {
    const due = Math.floor(((performance.now() - started) / 1000) * args.rate)
    while (sent < due && inFlight < MAX_IN_FLIGHT) send(sent++)
  }, TICK_MS)

  return {
    take() {
      const c = counts
      counts = emptyCounts()
      return c
    },
    get totalAccepted() {
      return totalAccepted
    },
    get totalRejected() {
      return totalRejected
    },
    totalByKind,
    async stop() {
      clearInterval(timer)
      await Promise.all([...pending])
    },
  }
}
