import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import { ApiError } from './api-error.ts'
import { createStoreRateLimiter, type StoreRateLimiter } from './store-rate-limiter.ts'

export { REDIS_TIMEOUT_MS } from './store-rate-limiter.ts'

/** Options of {@link createEnqueueRateLimiter}. */
export interface EnqueueRateLimiterOptions {
  /** Enqueued jobs per second per store (API_STORE_RATE). */
  readonly rate: number
  /** Bucket size; default twice the rate. */
  readonly burst?: number
  /** Shares buckets between API instances (REDIS_URL); null: buckets in this process only. */
  readonly redis: Redis | null
  /** Most stores the in-process buckets hold (default 100,000); the least recently used go first. */
  readonly maxBuckets?: number
  /** Where a Redis failure is reported (once per failure, at warn). */
  readonly log?: FastifyBaseLogger
  /** Injected clock (ms) for the in-process bucket. */
  readonly now?: () => number
}

/** Per-store enqueue limits: `take` spends a store's tokens or throws 429. */
export type EnqueueRateLimiter = StoreRateLimiter

/**
 * Creates the per-store enqueue rate limiter (a token bucket per store,
 * `take(storeId, jobs)`): Redis-backed when given a client, in-process
 * otherwise, the in-process one O(1) per take and bounded in memory. A
 * refused take throws ApiError 429 `rate_limited` with a Retry-After.
 *
 * @example
 * const limiter = createEnqueueRateLimiter({ rate: 100, redis: null })
 * await limiter.take('store-42', 1) // throws ApiError 429 when the store is over its rate
 */
export function createEnqueueRateLimiter(options: EnqueueRateLimiterOptions): EnqueueRateLimiter {
  const rate = options.rate
  const burst = options.burst ?? rate * 2
  return createStoreRateLimiter({
    rate,
    burst,
    redis: options.redis,
    keyPrefix: 'backroom:enqueue-rate:',
    maxBuckets: options.maxBuckets,
    log: options.log,
    now: options.now,
    refuse: (storeId, waitMs) =>
      new ApiError(429, 'rate_limited', `store ${storeId} is enqueueing faster than ${rate} jobs per second`, {
        details: { storeId, rate, burst },
        retryAfterMs: waitMs,
      }),
  })
}
