import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Type } from 'typebox'
import { afterAll, describe, expect, it } from 'vitest'
import { enqueueMany } from '../src/enqueue.ts'
import { SnoozeSignal, ValidationError } from '../src/errors.ts'
import { defineHandler } from '../src/handler.ts'
import { getRateLimit, handlerRateLimits, parseRetryAfter, setRateLimit } from '../src/rate-limits.ts'
import { waitFor } from '../src/testing/fixtures.ts'
import { useTestDatabase } from '../src/testing/use-test-database.ts'
import { createWorkerPool } from '../src/worker/worker-pool.ts'
import { killAllChildren, terminate } from './fixtures/child-process.ts'
import { CREATE_SIDE_EFFECTS, spawnWorker } from './fixtures/worker-process.ts'

const t = useTestDatabase()
afterAll(killAllChildren)

const doneCount = async (where: string) => Number((await t.db.pool.query(`select count(*) as n from job_history where ${where}`)).rows[0].n)

describe('rate limit buckets', () => {
  it('hands out the burst, then snoozes the caller until a token is due', async () => {
    await setRateLimit(t.db.kysely, 'api:a', { perSecond: 2, burst: 3 })
    const limits = handlerRateLimits(t.db.kysely)
    for (let i = 0; i < 3; i++) await limits.take('api:a')
    const snoozed = await limits.take('api:a').catch((e: unknown) => e)
    expect(snoozed).toBeInstanceOf(SnoozeSignal)
    // Two tokens a second: the next one is at most half a second away.
    expect((snoozed as SnoozeSignal).delayMs).toBeGreaterThan(0)
    expect((snoozed as SnoozeSignal).delayMs).toBeLessThanOrEqual(500)
    // A key without a limit is unlimited.
    await limits.take('api:unlimited', 1_000)
    expect(await getRateLimit(t.db.kysely, 'api:unlimited')).toBeNull()
  })

  it('reads Retry-After as seconds or a date, and rejects bad settings', async () => {
    const now = new Date('2026-11-28T12:00:00Z')
    expect(parseRetryAfter('3', now)).toBe(3_000)
    expect(parseRetryAfter('Sat, 28 Nov 2026 12:00:05 GMT', now)).toBe(5_000)
    expect(parseRetryAfter('soon', now)).toBeNull()
    expect(parseRetryAfter(null, now)).toBeNull()
    await expect(setRateLimit(t.db.kysely, 'k', { perSecond: 0 })).rejects.toBeInstanceOf(ValidationError)
    await expect(setRateLimit(t.db.kysely, 'k', { perSecond: 5, burst: 0.5 })).rejects.toBeInstanceOf(ValidationError)
    await expect(setRateLimit(t.db.kysely, 'k', { perSecond: 5, minPerSecond: 6 })).rejects.toBeInstanceOf(ValidationError)
    await expect(setRateLimit(t.db.kysely, '', { perSecond: 5 })).rejects.toBeInstanceOf(ValidationError)
  })
})

describe('rate limits at claim time, across worker processes', () => {
  it('never starts more keyed jobs in any interval than the burst plus the rate allows', { timeout: 90_000 }, async () => {
    const RATE = 20
    const BURST = 5
    const KEYED = 70
    await t.db.pool.query(CREATE_SIDE_EFFECTS)
    await setRateLimit(t.db.kysely, 'market:s1', { perSecond: RATE, burst: BURST })
    await enqueueMany(t.db.kysely, [
      ...Array.from({ length: KEYED }, () => ({ type: 'test.effect', storeId: 's1', rateKey: 'market:s1', payload: {} })),
      ...Array.from({ length: 30 }, () => ({ type: 'test.effect', storeId: 's2', payload: {} })),
    ])
    const workers = [1, 2].map((i) => spawnWorker({ url: t.url, label: `r${i}`, concurrency: 10, prefetch: i === 1 ? 5 : 0, poolMax: 4 }))
    await Promise.all(workers.map((w) => w.message('ready')))
    try {
      // Unkeyed work is not held up by the keyed backlog.
      await waitFor(async () => (await doneCount(`store_id = 's2'`)) === 30, { timeoutMs: 10_000, what: 'the unkeyed jobs' })
      await waitFor(async () => (await doneCount(`store_id = 's1'`)) === KEYED, { timeoutMs: 60_000, what: 'the keyed jobs' })
    } finally {
      await Promise.all(workers.map((w) => terminate(w)))
    }
    // Claim times (started_at, the database's clock, which the buckets use too), checked over every interval.
    const { rows } = await t.db.pool.query<{ ms: number }>(
      `select extract(epoch from started_at) * 1000 as ms from job_history where store_id = 's1' order by started_at`,
    )
    const starts = rows.map((r) => Number(r.ms))
    let worst = 0
    for (let i = 0; i < starts.length; i++) {
      for (let j = i; j < starts.length; j++) {
        const allowed = BURST + (RATE * (starts[j]! - starts[i]!)) / 1000
        worst = Math.max(worst, j - i + 1 - allowed)
      }
    }
    // One token of slack for float rounding at the interval edges.
    expect(worst).toBeLessThanOrEqual(1)
    // The limit bound, it did not just trickle: the keyed jobs took about (KEYED - BURST) / RATE seconds.
    const spanMs = starts.at(-1)! - starts[0]!
    expect(spanMs).toBeGreaterThanOrEqual(((KEYED - BURST - 1) / RATE) * 1000)
    expect(spanMs).toBeLessThan(((KEYED - BURST) / RATE) * 1000 * 3)
    const once = await t.db.pool.query(`select count(*)::int as n, count(distinct job_id)::int as jobs from side_effects`)
    expect(once.rows[0]).toEqual({ n: KEYED + 30, jobs: KEYED + 30 })
  })
})

describe('429 and Retry-After', () => {
  it('snoozes without spending the attempt, halves the key\'s rate, then recovers it', { timeout: 60_000 }, async () => {
    // A marketplace on 127.0.0.1 that answers its first three calls with 429 and Retry-After: 1.
    let calls = 0
    let throttled = 0
    const server: Server = createServer((_req, res) => {
      calls++
      if (calls <= 3) {
        throttled++
        res.writeHead(429, { 'retry-after': '1' }).end()
        return
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/upload`
    const KEY = 'market:throttled'
    await setRateLimit(t.db.kysely, KEY, { perSecond: 8, burst: 2, minPerSecond: 1.5, recoverySeconds: 8 })

    const rates: number[] = []
    const handler = defineHandler({
      type: 'test.upload',
      payload: Type.Object({}),
      async run(_payload, ctx) {
        await ctx.rateLimits.take(KEY)
        const res = await fetch(url, { method: 'POST', signal: ctx.signal })
        if (res.status === 429) {
          const wait = parseRetryAfter(res.headers.get('retry-after')) ?? 1_000
          try {
            await ctx.rateLimits.backOff(KEY, wait)
          } finally {
            rates.push((await getRateLimit(t.db.kysely, KEY))!.currentPerSecond)
          }
        }
      },
    })
    await enqueueMany(t.db.kysely, Array.from({ length: 6 }, () => ({ type: 'test.upload', storeId: 'u' })))
    const pool = createWorkerPool({ db: t.db.kysely, connectionString: t.url, handlers: [handler], concurrency: 1, maintenanceIntervals: { promoteMs: 50 } })
    await pool.start()
    try {
      await waitFor(async () => (await doneCount(`type = 'test.upload'`)) === 6, { timeoutMs: 30_000, what: 'the uploads' })
    } finally {
      await pool.stop()
      await new Promise<void>((r) => server.close(() => r()))
    }
    expect(throttled).toBe(3)
    // Multiplicative decrease on each 429: 8 → 4 → about 2 → the 1.5 minimum. Between them the rate
    // recovers by 1/s (8 per 8 s) once each 1 s Retry-After is over, for the moment until the next call.
    expect(rates).toHaveLength(3)
    expect(rates[0]).toBe(4)
    expect(rates[1]).toBeGreaterThanOrEqual(2)
    expect(rates[1]).toBeLessThan(2.5)
    expect(rates[2]).toBe(1.5)
    // Snoozes spent no attempt: every upload completed on attempt 1, with no error recorded.
    const { rows } = await t.db.pool.query(`select attempt, errors from job_history where type = 'test.upload'`)
    expect(rows.every((r) => r.attempt === 1 && r.errors.length === 0)).toBe(true)
    // Additive increase: one call per second more for every second that passes, up to the full rate.
    const first = (await getRateLimit(t.db.kysely, KEY))!.currentPerSecond
    await new Promise((r) => setTimeout(r, 2_000))
    const second = (await getRateLimit(t.db.kysely, KEY))!.currentPerSecond
    expect(second - first).toBeGreaterThan(1.7)
    expect(second - first).toBeLessThan(2.5)
    expect(second).toBeLessThanOrEqual(8)
  })
})
