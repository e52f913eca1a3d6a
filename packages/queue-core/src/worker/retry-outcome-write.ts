import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'

/** First pause before an outcome write is tried again; it doubles up to OUTCOME_RETRY_MAX_MS. */
export const OUTCOME_RETRY_FIRST_MS = 50
/** Longest pause between two tries of an outcome write. */
export const OUTCOME_RETRY_MAX_MS = 1_000

/** The pause before try `n + 1` (n ≥ 1), jittered ±20 % so workers cut off together do not return in step. */
export function outcomeRetryDelayMs(n: number): number {
  const base = Math.min(OUTCOME_RETRY_MAX_MS, OUTCOME_RETRY_FIRST_MS * 2 ** (n - 1))
  return Math.round(base * (0.8 + Math.random() * 0.4))
}

/** The SQLSTATE of a PostgreSQL error, if it is one. */
function sqlState(err: unknown): string | null {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : null
}

/**
 * A data exception (SQLSTATE class 22): the statement's values were bad,
 * so sending it again fails again. Only the items of a batch can differ.
 */
export function isDataError(err: unknown): boolean {
  return sqlState(err)?.startsWith('22') ?? false
}

/**
 * Classes that say the server or the connection, not the statement, was
 * the trouble: connection exceptions (08), rollbacks from serialisation or
 * deadlock (40), insufficient resources (53), lock not available and
 * "database not accepting connections" (55), operator intervention
 * (57: shutdown, terminated backend, statement timeout) and system errors (58).
 */
const TRANSIENT_CLASSES: ReadonlySet<string> = new Set(['08', '40', '53', '55', '57', '58'])

/**
 * Whether the same write may succeed if sent again: an error of a transient
 * SQLSTATE class, or one with no SQLSTATE at all (the socket closed, the
 * connection was refused, the pool timed out acquiring a connection).
 */
export function isTransientError(err: unknown): boolean {
  const state = sqlState(err)
  return state === null ? true : TRANSIENT_CLASSES.has(state.slice(0, 2))
}

/**
 * What a log line may say about a failed write: its code (a SQLSTATE, or a
 * socket error's such as ECONNREFUSED) and message, never the whole error:
 * a data error's `where` and `detail` quote the statement's values (outcome
 * text, which may hold anything a handler returned).
 */
export function writeErrorFields(err: unknown): { errCode: string | null; errMessage: string } {
  const code = (err as { code?: unknown } | null)?.code
  return { errCode: typeof code === 'string' ? code : null, errMessage: err instanceof Error ? err.message : String(err) }
}

/**
 * Runs a fenced outcome write, trying it again with backoff after a
 * transient error for as long as the lease may still hold (`until()`, a
 * `performance.now()` time read before each pause, so a heartbeat that
 * extends the lease meanwhile extends the tries too). The first try always
 * happens. A write past the lease is pointless rather than harmful: it is
 * fenced on (id, attempt, lease token), so after a rescue it matches nothing.
 * Throws the last error when it gives up, and at once for a non-transient one.
 */
export async function retryOutcomeWrite<T>(write: () => Promise<T>, args: { until: () => number; log: Logger; what: string }): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await write()
    } catch (err) {
      const delayMs = outcomeRetryDelayMs(n)
      if (!isTransientError(err) || performance.now() + delayMs >= args.until()) throw err
      args.log.warn({ ...writeErrorFields(err), write: args.what, tries: n, delayMs }, 'outcome write failed; retrying')
      await sleep(delayMs)
    }
  }
}
