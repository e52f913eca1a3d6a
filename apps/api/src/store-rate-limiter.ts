import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import type { ApiError } from './api-error.ts'
import { createTokenBuckets } from './token-buckets.ts'

/** Longest wait for Redis before the in-process bucket decides instead: a request must not hang on it. */
export const REDIS_TIMEOUT_MS = 250

/** Options of {@link createStoreRateLimiter}. */
export interface StoreRateLimiterOptions {
  /** Tokens per second per store (may be below 1: 10 a minute is 1/6). */
  readonly rate: number
  /** Bucket size. */
  readonly burst: number
  /** Shares buckets between API instances; null: buckets in this process only. */
  readonly redis: Redis | null
  /** Redis key prefix naming what is limited, e.g. `backroom:enqueue-rate:`. */
  readonly keyPrefix: string
  /** The 429 for a refused take. */
  readonly refuse: (storeId: string, waitMs: number) => ApiError
  /** Most stores the in-process buckets hold (see createTokenBuckets). */
  readonly maxBuckets?: number
  /** Where a Redis failure is reported (once per failure, at warn). */
  readonly log?: FastifyBaseLogger
  /** Injected clock (ms) for the in-process buckets. */
  readonly now?: () => number
}

/** Per-store limits: `take` spends a store's tokens or throws the limiter's 429. */
export interface StoreRateLimiter {
  /**
   * Spends `cost` tokens of the store's bucket, or throws the `refuse` error.
   * A request is let through when the bucket holds min(cost, burst) tokens;
   * a cost above the burst then drives the bucket into debt, which later
   * requests wait out, so the long-run rate holds for batches too.
   */
  take(storeId: string, cost: number): Promise<void>
  /** Buckets held in this process (the Redis fallback's, or all of them without Redis). */
  localBuckets(): number
}

/**
 * A token bucket per store, refilled at `rate` per second up to `burst`.
 * Redis state: a hash per store, `{ tokens, ms }`, updated by one Lua script
 * (atomic across API instances; Redis's own clock, so instance clocks may
 * differ). Keys expire once a full bucket would have refilled.
 */
const TAKE_SCRIPT = `
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ms')
local tokens = tonumber(state[1]) or burst
local last = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - last) * rate / 1000)
local need = math.min(cost, burst)
if tokens < need then
  return math.ceil((need - tokens) * 1000 / rate)
end
tokens = tokens - cost
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ms', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
return 0
`

/**
 * Creates a per-store rate limiter: Redis-backed when given a client,
 * in-process otherwise. If Redis fails or is slow, the in-process bucket
 * decides for that request (logged): a Redis outage weakens the limit to
 * per-instance instead of failing every request with a 5xx.
 *
 * @example
 * const uploads = createStoreRateLimiter({
 *   rate: 10 / 60, burst: 10, redis: null, keyPrefix: 'backroom:upload-rate:',
 *   refuse: (storeId, waitMs) => new ApiError(429, 'rate_limited', 'too many uploads', { retryAfterMs: waitMs }),
 * })
 * await uploads.take('store-42', 1)
 */
export function createStoreRateLimiter(options: StoreRateLimiterOptions): StoreRateLimiter {
  const { rate, burst } = options
  const local = createTokenBuckets({ rate, burst, maxBuckets: options.maxBuckets, now: options.now })

  async function takeRedis(redis: Redis, storeId: string, cost: number): Promise<number> {
    let timer: NodeJS.Timeout | undefined
    try {
      const answer = await Promise.race([
        redis.eval(TAKE_SCRIPT, 1, `${options.keyPrefix}${storeId}`, rate, burst, cost),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`redis did not answer within ${REDIS_TIMEOUT_MS} ms`)), REDIS_TIMEOUT_MS)
        }),
      ])
      return Number(answer)
    } catch (err) {
      options.log?.warn({ err, storeId }, 'rate limit redis failed; using the in-process bucket')
      return local.take(storeId, cost)
    } finally {
      clearTimeout(timer)
    }
  }

  return {
    async take(storeId, cost) {
      const waitMs = options.redis ? await takeRedis(options.redis, storeId, cost) : local.take(storeId, cost)
      if (waitMs > 0) throw options.refuse(storeId, waitMs)
    },
    localBuckets: () => local.size(),
  }
}
