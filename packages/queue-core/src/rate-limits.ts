import type { Executor } from './db/database.ts'
import * as buckets from './db/rate-limits.ts'
import { snooze, ValidationError } from './errors.ts'

/** Settings of one rate-limit key. */
export interface RateLimitOptions {
  /** Calls per second when the remote side is healthy. */
  readonly perSecond: number
  /** Calls allowed at once after a quiet spell (default: one second's worth, at least 1). */
  readonly burst?: number
  /** The rate never adapts below this (default: a tenth of perSecond). */
  readonly minPerSecond?: number
  /** After a 429, the rate climbs back to perSecond linearly over this long (default 60 s). */
  readonly recoverySeconds?: number
}

/** A rate-limit key as it stands now. */
export interface RateLimitState {
  readonly key: string
  readonly perSecond: number
  readonly minPerSecond: number
  /** The adapted rate now (below perSecond after a 429, recovering). */
  readonly currentPerSecond: number
  readonly burst: number
  /** Tokens in the bucket now. */
  readonly available: number
  /** Milliseconds a Retry-After still holds the bucket shut (0 when open). */
  readonly blockedMs: number
}

function checkKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0 || key.length > 255) {
    throw new ValidationError('a rate-limit key must be a string of 1 to 255 characters', { field: 'key' })
  }
}

/**
 * Creates or changes the rate limit of a key, shared by every worker
 * process. Jobs enqueued with this `rateKey` are claimed only with a token;
 * handlers take further tokens with `ctx.rateLimits.take(key)`.
 *
 * @example
 * await setRateLimit(db.kysely, 'marketplace:acme:store-42', { perSecond: 10 })
 */
export async function setRateLimit(db: Executor, key: string, options: RateLimitOptions): Promise<void> {
  checkKey(key)
  const { perSecond } = options
  if (!Number.isFinite(perSecond) || perSecond <= 0 || perSecond > 1e6) throw new ValidationError('perSecond must be a number above 0', { field: 'perSecond' })
  const burst = options.burst ?? Math.max(1, perSecond)
  if (!Number.isFinite(burst) || burst < 1 || burst > 1e6) throw new ValidationError('burst must be a number of at least 1', { field: 'burst' })
  const minPerSecond = options.minPerSecond ?? perSecond / 10
  if (!Number.isFinite(minPerSecond) || minPerSecond <= 0 || minPerSecond > perSecond) {
    throw new ValidationError('minPerSecond must be above 0 and at most perSecond', { field: 'minPerSecond' })
  }
  const recoverySeconds = options.recoverySeconds ?? 60
  if (!Number.isFinite(recoverySeconds) || recoverySeconds <= 0 || recoverySeconds > 86_400) {
    throw new ValidationError('recoverySeconds must be a number of seconds above 0', { field: 'recoverySeconds' })
  }
  await buckets.upsertRateLimit(db, { key, perSecond, burst, minPerSecond, recoverySeconds })
}

/** Removes a key's rate limit; returns false when it had none. */
export async function removeRateLimit(db: Executor, key: string): Promise<boolean> {
  checkKey(key)
  return buckets.deleteRateLimit(db, key)
}

/** A key's rate limit as it stands now, or null when it has none. */
export async function getRateLimit(db: Executor, key: string): Promise<RateLimitState | null> {
  checkKey(key)
  const row = await buckets.readBucket(db, key)
  if (!row) return null
  return {
    key: row.key,
    perSecond: row.max_rate,
    minPerSecond: row.min_rate,
    currentPerSecond: row.rate_now,
    burst: row.burst,
    available: row.available,
    blockedMs: row.blocked_ms,
  }
}

/** What a handler's context offers for rate limits (`ctx.rateLimits`). */
export interface HandlerRateLimits {
  /**
   * Takes `n` tokens (default 1) of `key` before a call. Without them the job
   * is snoozed until the bucket refills (the attempt is not spent). A key
   * without a rate limit is unlimited.
   */
  take(key: string, n?: number): Promise<void>
  /**
   * The remote side answered 429: halves the key's rate (multiplicative
   * decrease; it recovers additively), holds the bucket shut for
   * `retryAfterMs`, and snoozes the job that long. Never returns.
   */
  backOff(key: string, retryAfterMs: number): Promise<never>
}

/** The rate-limit helpers of one run. */
export function handlerRateLimits(db: Executor): HandlerRateLimits {
  return {
    async take(key, n = 1) {
      checkKey(key)
      if (!Number.isInteger(n) || n < 1) throw new ValidationError('n must be a whole number of tokens, at least 1', { field: 'n' })
      const taken = await buckets.takeTokens(db, { key, n })
      if (taken.took || taken.waitMs === null) return
      throw snooze(Math.ceil(taken.waitMs))
    },
    async backOff(key, retryAfterMs) {
      checkKey(key)
      const wait = Number.isFinite(retryAfterMs) && retryAfterMs > 0 ? Math.ceil(retryAfterMs) : 1_000
      await buckets.throttle(db, { key, retryAfterMs: wait })
      throw snooze(wait)
    },
  }
}

/**
 * A Retry-After header as milliseconds from `now`: delay-seconds or an
 * HTTP date; null when absent or unreadable.
 */
export function parseRetryAfter(value: string | null | undefined, now: Date = new Date()): number | null {
  if (value === null || value === undefined) return null
  const text = value.trim()
  if (/^\d+$/.test(text)) return Number(text) * 1000
  const at = Date.parse(text)
  return Number.isNaN(at) ? null : Math.max(0, at - now.getTime())
}
