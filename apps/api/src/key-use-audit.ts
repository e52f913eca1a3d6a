import { recordApiKeyUses, type ApiKeyUseCount, type Db } from '@backroom/queue-core'
import type { FastifyBaseLogger } from 'fastify'
import { createPeriodicTask } from './periodic-task.ts'

/** How often each API process writes its counted key uses when the caller does not say. */
export const DEFAULT_KEY_USE_FLUSH_MS = 5_000
/**
 * (key, hour) pairs held at most while the database does not take them.
 * Only authenticated keys are counted, so reaching this takes an outage of
 * many hours with tens of thousands of active keys; past it, uses of new
 * pairs are not counted (and the number lost is logged), held memory is not.
 */
const MAX_PENDING_PAIRS = 100_000
const HOUR_MS = 3_600_000

/** Options of {@link createKeyUseAudit}. */
export interface KeyUseAuditOptions {
  readonly db: Db
  readonly log: FastifyBaseLogger
  /** Period of the background flush; null: only on flush() and stop(). */
  readonly flushIntervalMs: number | null
  /** Injected clock (ms). */
  readonly now?: () => number
}

/** Counts authenticated requests per key and hour in memory; writes them in one statement at a time. */
export interface KeyUseAudit {
  /** Counts one authenticated request of `keyId` (a key id, `admin` or `admin-previous`). No I/O. */
  record(keyId: string, storeId: string | null): void
  /** Writes what was counted so far (one statement); returns the uses written. On failure the counts are kept for the next try. */
  flush(): Promise<number>
  /** Uses counted and not yet written. */
  pending(): number
  /** Starts the background flush. */
  start(): void
  /** Stops the background flush and writes what is left (a failure is logged with the uses lost, not thrown). */
  stop(): Promise<void>
}

interface Pending {
  keyId: string
  storeId: string | null
  hour: number
  uses: number
  first: number
  last: number
}

/**
 * The use half of the API key audit. Writing a row per request would cost
 * a statement per request, so each API process adds up its requests per
 * key and UTC hour, and every `flushIntervalMs` adds them to the table with
 * one upsert (several processes add to the same rows). At a clean stop
 * (SIGTERM) it flushes after the last request was answered, so nothing is
 * lost; a crash loses at most the uses of the last interval.
 *
 * @example
 * const uses = createKeyUseAudit({ db, log, flushIntervalMs: 5_000 })
 * uses.record('42', 'store-7')
 */
export function createKeyUseAudit(options: KeyUseAuditOptions): KeyUseAudit {
  const log = options.log.child({ component: 'key-use-audit' })
  const now = options.now ?? Date.now
  let counts = new Map<string, Pending>()
  /** Uses held (counted, not yet written), a flush in progress included. */
  let pendingUses = 0
  /** Uses not held for want of room since the last report. */
  let droppedUses = 0
  // One flush at a time: a flush that failed puts its counts back before the next one takes them.
  let flushing: Promise<unknown> = Promise.resolve()

  function add(entry: Pending): boolean {
    const id = `${entry.keyId}\u0000${entry.hour}`
    const held = counts.get(id)
    if (held) {
      held.uses += entry.uses
      held.first = Math.min(held.first, entry.first)
      held.last = Math.max(held.last, entry.last)
      return true
    }
    if (counts.size >= MAX_PENDING_PAIRS) return false
    counts.set(id, { ...entry })
    return true
  }

  async function write(): Promise<number> {
    const taken = counts
    if (taken.size === 0) return 0
    counts = new Map()
    const rows: ApiKeyUseCount[] = [...taken.values()].map((p) => ({
      keyId: p.keyId,
      storeId: p.storeId,
      hour: new Date(p.hour),
      uses: p.uses,
      firstUsedAt: new Date(p.first),
      lastUsedAt: new Date(p.last),
    }))
    const uses = rows.reduce((sum, r) => sum + r.uses, 0)
    try {
      await recordApiKeyUses(options.db.kysely, rows)
    } catch (err) {
      // Kept for the next flush. A flush whose connection died after the
      // server committed is counted twice this way; losing counts on every
      // failed flush would be the worse error for an audit.
      for (const p of taken.values()) {
        if (add(p)) continue
        pendingUses -= p.uses
        droppedUses += p.uses
      }
      throw err
    }
    pendingUses -= uses
    if (droppedUses > 0) {
      log.warn({ droppedUses }, 'key uses not audited: too many keys and hours held while the database was away')
      droppedUses = 0
    }
    return uses
  }

  function flush(): Promise<number> {
    const run = flushing.then(write)
    flushing = run.catch(() => {})
    return run
  }

  const task =
    options.flushIntervalMs === null
      ? null
      : createPeriodicTask({ intervalMs: options.flushIntervalMs, run: flush, log, failureMessage: 'key use audit flush failed; counts kept for the next one' })

  return {
    record(keyId, storeId) {
      const at = now()
      if (add({ keyId, storeId, hour: Math.floor(at / HOUR_MS) * HOUR_MS, uses: 1, first: at, last: at })) pendingUses++
      else droppedUses++
    },
    flush,
    pending: () => pendingUses,
    start: () => task?.start(),
    async stop() {
      await task?.stop()
      try {
        await flush()
      } catch (err) {
        log.error({ err, lostUses: pendingUses + droppedUses }, 'key use audit not written at shutdown')
      }
    },
  }
}
