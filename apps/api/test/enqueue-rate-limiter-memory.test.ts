import { describe, expect, it } from 'vitest'
import { ApiError } from '../src/api-error.ts'
import { createEnqueueRateLimiter } from '../src/enqueue-rate-limiter.ts'

/** The wait a refused take() asks for, in ms; 0 when it was let through. */
async function waitOf(take: Promise<void>): Promise<number> {
  try {
    await take
    return 0
  } catch (err) {
    if (err instanceof ApiError && err.statusCode === 429) return err.retryAfterMs ?? -1
    throw err
  }
}

describe('createEnqueueRateLimiter (in-process memory)', () => {
  it('holds at most maxBuckets buckets however many stores enqueue at once', async () => {
    const now = 1_000_000
    const limiter = createEnqueueRateLimiter({ rate: 10, redis: null, now: () => now, maxBuckets: 1_000 })
    // Every bucket is part spent (none is full), so none can be forgotten for being idle.
    for (let i = 0; i < 50_000; i++) await limiter.take(`store-${i}`, 1)
    expect(limiter.localBuckets()).toBeLessThanOrEqual(1_000)
    // The most recent stores are the ones kept: the last one is still charged.
    for (let i = 0; i < 19; i++) await limiter.take('store-49999', 1)
    expect(await waitOf(limiter.take('store-49999', 1))).toBe(100)
  })

  it('forgets buckets that have refilled, so idle stores cost no memory', async () => {
    let now = 0
    const limiter = createEnqueueRateLimiter({ rate: 10, redis: null, now: () => now })
    for (let i = 0; i < 20_000; i++) await limiter.take(`store-${i}`, 1)
    expect(limiter.localBuckets()).toBe(20_000)
    // A spent token comes back in 100 ms at 10/s: every bucket is full again.
    now += 100
    // Each take forgets a bounded number of refilled buckets: memory drains as stores keep enqueueing.
    for (let i = 0; i < 10_000; i++) await waitOf(limiter.take('busy', 1))
    expect(limiter.localBuckets()).toBe(1)
  })

  it('keeps a store in debt across idle stores passing by, and charges it as before', async () => {
    let now = 0
    const limiter = createEnqueueRateLimiter({ rate: 10, redis: null, now: () => now })
    // 20 - 100 = -80 tokens: 8.1 s before one more job.
    expect(await waitOf(limiter.take('batcher', 100))).toBe(0)
    for (let step = 0; step < 80; step++) {
      now += 100
      for (let i = 0; i < 100; i++) await limiter.take(`passer-${step}-${i}`, 1)
    }
    // Passers refill in 100 ms and are forgotten; the debtor is not.
    expect(limiter.localBuckets()).toBeLessThan(1_000)
    expect(await waitOf(limiter.take('batcher', 1))).toBe(100)
  })

  it('refuses a bad maxBuckets at creation', () => {
    expect(() => createEnqueueRateLimiter({ rate: 1, redis: null, maxBuckets: 0 })).toThrow(RangeError)
  })
})
