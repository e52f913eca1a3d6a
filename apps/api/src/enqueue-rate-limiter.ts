import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import { ApiError } from './api-error.ts'

/** Longest wait for Redis before the in-process bucket decides instead: an enqueue must not hang on it. */
export const REDIS_TIMEOUT_MS = 250

/** Options of {@link createEnqueueRateLimiter}. */
export interface EnqueueRateLimiterOptions {
  /** Enqueued jobs per second per store (API_STORE_RATE). */
  readonly rate: number
  /** Bucket size; default twice the rate. */
  readonly burst?: number
  /** Shares buckets between API instances (REDIS_URL); null: buckets in this process only. */
  readonly redis: Redis | null
  /** Where a Redis failure is reported (once per failure, at warn). */
  readonly log?: FastifyBaseLogger
  /** Injected clock (ms) for the in-process bucket. */
  readonly now?: () => number
}

/** Per-store enqueue limits: `take` spends a store's tokens or throws 429. */
export interface EnqueueRateLimiter {
  /**
   * Spends `jobs` tokens of the store's bucket, or throws ApiError 429
   * `rate_limited` with a Retry-After. A request is let through when the
   * bucket holds min(jobs, burst) tokens; a batch larger than the burst then
   * drives the bucket into debt, which later requests wait out, so the
   * long-run rate holds for batches too.
   */
  take(storeId: string, jobs: number): Promise<void>
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
 * Creates the per-store enqueue rate limiter: Redis-backed when given a
 * client, in-process otherwise. If Redis fails or is slow, the in-process
 * bucket decides for that request (logged): a Redis outage weakens the limit
 * to per-instance instead of failing every enqueue with a 5xx.
 *
 * @example
 * const limiter = createEnqueueRateLimiter({ rate: 100, redis: null })
 * await limiter.take('store-42', 1) // throws ApiError 429 when the store is over its rate
 */
export function createEnqueueRateLimiter(options: EnqueueRateLimiterOptions): EnqueueRateLimiter {
  const rate = options.rate
  const burst = options.burst ?? rate * 2
  if (!(rate > 0) || !(burst >= 1)) throw new RangeError('rate must be > 0 and burst >= 1')
  const now = options.now ?? Date.now
  const local = new Map<string, { tokens: number; ms: number }>()

  function takeLocal(storeId: string, cost: number): number {
    const t = now()
    const bucket = local.get(storeId) ?? { tokens: burst, ms: t }
    const tokens = Math.min(burst, bucket.tokens + (Math.max(0, t - bucket.ms) * rate) / 1000)
    const need = Math.min(cost, burst)
    if (tokens < need) {
      local.set(storeId, { tokens, ms: t })
      return Math.ceil(((need - tokens) * 1000) / rate)
    }
    local.set(storeId, { tokens: tokens - cost, ms: t })
    // Full buckets carry no information: forget them so idle stores cost no memory.
    if (local.size > 10_000) for (const [k, b] of local) if (b.tokens >= burst) local.delete(k)
    return 0
  }

  async function takeRedis(redis: Redis, storeId: string, cost: number): Promise<number> {
    let timer: NodeJS.Timeout | undefined
    try {
      const answer = await Promise.race([
        redis.eval(TAKE_SCRIPT, 1, `backroom:enqueue-rate:${storeId}`, rate, burst, cost),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`redis did not answer within ${REDIS_TIMEOUT_MS} ms`)), REDIS_TIMEOUT_MS)
        }),
      ])
      return Number(answer)
    } catch (err) {
      options.log?.warn({ err, storeId }, 'rate limit redis failed; using the in-process bucket')
      return takeLocal(storeId, cost)
    } finally {
      clearTimeout(timer)
    }
  }

  return {
    async take(storeId, jobs) {
      const waitMs = options.redis ? await takeRedis(options.redis, storeId, jobs) : takeLocal(storeId, jobs)
      if (waitMs > 0) {
        throw new ApiError(429, 'rate_limited', `store ${storeId} is enqueueing faster than ${rate} jobs per second`, {
          details: { storeId, rate, burst },
          retryAfterMs: waitMs,
        })
      }
    },
  }
}
