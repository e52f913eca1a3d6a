import { Readable } from 'node:stream'
import { createApiKey, enqueue } from '@backroom/queue-core'
import { useTestDatabase, waitFor } from '@backroom/queue-core/testing'
import { migrateShop } from '@backroom/handlers'
import type { FastifyInstance } from 'fastify'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { AppDeps } from '../src/app.ts'
import { testApp } from './test-app.ts'

const t = useTestDatabase()
const keys = new Map<string, string>()
let platform: string
const apps: FastifyInstance[] = []

beforeAll(async () => {
  await migrateShop(t.url)
  platform = (await createApiKey(t.db.kysely, { storeId: null })).key
})
afterEach(async () => {
  while (apps.length > 0) await apps.pop()!.close()
})
afterAll(async () => {
  while (apps.length > 0) await apps.pop()!.close()
})

async function uploadsApp(deps: Partial<AppDeps>): Promise<FastifyInstance> {
  const app = await testApp({ db: t.db, ...deps })
  apps.push(app)
  return app
}

/** A store key of its own per store name, so tests never share a quota or a bucket. */
async function keyOf(storeId: string): Promise<string> {
  if (!keys.has(storeId)) keys.set(storeId, (await createApiKey(t.db.kysely, { storeId })).key)
  return keys.get(storeId)!
}

/** A CSV feed of exactly `bytes` bytes. */
function feed(bytes: number): string {
  const header = 'sku,title,price,currency\n'
  return header + 'x'.repeat(bytes - header.length - 1) + '\n'
}

const upload = (app: FastifyInstance, key: string, body: string | Readable, url = '/v1/uploads?format=csv') =>
  app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${key}`, 'content-type': 'text/csv' }, payload: body })

async function stored(storeId: string): Promise<{ uploads: number; bytes: number; parts: number }> {
  const { rows } = await t.db.pool.query(
    `select count(*)::int as uploads, coalesce(sum(bytes), 0)::int as bytes,
            (select count(*)::int from shop.feed_upload_parts p join shop.feed_uploads u using (upload_id) where u.store_id = $1) as parts
     from shop.feed_uploads where store_id = $1`,
    [storeId],
  )
  return rows[0]
}

/** Moves an upload's creation back by `hours`. */
async function age(uploadId: string, hours: number): Promise<void> {
  await t.db.pool.query(`update shop.feed_uploads set created_at = created_at - $2 * interval '1 hour' where upload_id = $1`, [uploadId, hours])
}

async function exists(uploadId: string): Promise<boolean> {
  const { rows } = await t.db.pool.query('select 1 from shop.feed_uploads where upload_id = $1', [uploadId])
  return rows.length === 1
}

describe('upload quota per store', () => {
  it('refuses an upload that would pass the store quota with 413 upload_quota_exceeded, keeping nothing of it', async () => {
    const app = await uploadsApp({ uploadQuotaBytes: 4096 })
    const key = await keyOf('store-q1')
    expect((await upload(app, key, feed(3000))).statusCode).toBe(201)
    const res = await upload(app, key, feed(2000))
    expect(res.statusCode).toBe(413)
    expect(res.json().error).toMatchObject({ code: 'upload_quota_exceeded', details: { quotaBytes: 4096, usedBytes: 3000 } })
    expect(await stored('store-q1')).toEqual({ uploads: 1, bytes: 3000, parts: 1 })
    // What still fits is accepted; another store has its own quota.
    expect((await upload(app, key, feed(1096))).statusCode).toBe(201)
    expect((await upload(app, await keyOf('store-q1b'), feed(3000))).statusCode).toBe(201)
  })

  it('stops a streamed upload (no Content-Length) once it passes the quota, keeping nothing of it', async () => {
    const app = await uploadsApp({ uploadQuotaBytes: 4096 })
    const key = await keyOf('store-q2')
    expect((await upload(app, key, feed(3000))).statusCode).toBe(201)
    const res = await upload(app, key, Readable.from([Buffer.from(feed(1000)), Buffer.from(feed(1000))]))
    expect(res.statusCode).toBe(413)
    expect(res.json().error.code).toBe('upload_quota_exceeded')
    expect(await stored('store-q2')).toEqual({ uploads: 1, bytes: 3000, parts: 1 })
  })

  it('holds under concurrent uploads of one store: what is kept never passes the quota, and what fits is kept', async () => {
    const app = await uploadsApp({ uploadQuotaBytes: 4096, uploadRatePerMinute: 100 })
    const key = await keyOf('store-q3')
    const answers = await Promise.all(Array.from({ length: 8 }, () => upload(app, key, Readable.from([Buffer.from(feed(1500))]))))
    const statuses = answers.map((r) => r.statusCode)
    expect(statuses.every((s) => s === 201 || s === 413)).toBe(true)
    const kept = await stored('store-q3')
    expect(kept.uploads).toBe(statuses.filter((s) => s === 201).length)
    expect(kept.uploads).toBeGreaterThanOrEqual(1)
    expect(kept.bytes).toBeLessThanOrEqual(4096)
    // Parts are checked one store at a time, so exactly the two uploads that fit (2 × 1,500 of 4,096) are kept.
    expect(kept.uploads).toBe(2)
  })

  it('charges a platform key upload to the store it names', async () => {
    const app = await uploadsApp({ uploadQuotaBytes: 4096 })
    expect((await upload(app, platform, feed(3000), '/v1/uploads?format=csv&storeId=store-q4')).statusCode).toBe(201)
    const res = await upload(app, await keyOf('store-q4'), feed(2000))
    expect(res.json().error.code).toBe('upload_quota_exceeded')
  })
})

describe('upload rate per store', () => {
  it('refuses uploads past the per-minute rate with 429 and Retry-After, storing nothing', async () => {
    const app = await uploadsApp({ uploadRatePerMinute: 2 })
    const key = await keyOf('store-r1')
    expect((await upload(app, key, feed(100))).statusCode).toBe(201)
    expect((await upload(app, key, feed(100))).statusCode).toBe(201)
    const res = await upload(app, key, feed(100))
    expect(res.statusCode).toBe(429)
    expect(res.json().error.code).toBe('rate_limited')
    expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1)
    expect((await stored('store-r1')).uploads).toBe(2)
    // Another store has its own bucket.
    expect((await upload(app, await keyOf('store-r2'), feed(100))).statusCode).toBe(201)
  })
})

describe('upload retention', () => {
  it('deletes a store\'s expired uploads when it uploads again, except those a live import job names', async () => {
    const app = await uploadsApp({ uploadRetentionHours: 1 })
    const key = await keyOf('store-t1')
    const ids: string[] = []
    for (let i = 0; i < 3; i++) ids.push((await upload(app, key, feed(500))).json().uploadId)
    const [unused, imported, fresh] = ids as [string, string, string]
    await age(unused, 2)
    await age(imported, 2)
    // A pending import of `imported`: it must still be readable when a worker takes the job.
    await enqueue(t.db.kysely, { type: 'import.products', storeId: 'store-t1', payload: { uploadId: imported } })
    // Another store's job naming the same id does not keep it (imports read their own store's uploads only).
    await enqueue(t.db.kysely, { type: 'import.products', storeId: 'store-other', payload: { uploadId: unused } })

    expect((await upload(app, key, feed(500))).statusCode).toBe(201)
    expect(await exists(unused)).toBe(false)
    expect(await exists(imported)).toBe(true)
    expect(await exists(fresh)).toBe(true)
    // The parts went with it.
    expect(await stored('store-t1')).toMatchObject({ uploads: 3, parts: 3 })
  })

  it('frees quota: expired uploads no longer count against it', async () => {
    const app = await uploadsApp({ uploadRetentionHours: 1, uploadQuotaBytes: 4096 })
    const key = await keyOf('store-t2')
    const old = (await upload(app, key, feed(3000))).json().uploadId as string
    expect((await upload(app, key, feed(3000))).statusCode).toBe(413)
    await age(old, 2)
    expect((await upload(app, key, feed(3000))).statusCode).toBe(201)
    expect(await exists(old)).toBe(false)
  })

  it('sweeps expired uploads of stores that never upload again, in the background', async () => {
    const app = await uploadsApp({ uploadRetentionHours: 1, uploadSweepIntervalMs: 100 })
    const key = await keyOf('store-t3')
    const unused = (await upload(app, key, feed(500))).json().uploadId as string
    const imported = (await upload(app, key, feed(500))).json().uploadId as string
    const finished = (await upload(app, key, feed(500))).json().uploadId as string
    for (const id of [unused, imported, finished]) await age(id, 2)
    await enqueue(t.db.kysely, { type: 'import.products', storeId: 'store-t3', payload: { uploadId: imported } })
    // A finished import (moved to history) no longer needs its upload.
    const done = await enqueue(t.db.kysely, { type: 'import.products', storeId: 'store-t3', payload: { uploadId: finished } })
    await t.db.pool.query(
      `with gone as (delete from jobs where id = $1 returning *)
       insert into job_history (id, type, queue, store_id, user_id, priority, state, attempt, max_attempts, payload, dedupe_key, progress, errors, result, run_at, created_at, started_at, finished_at)
       select id, type, queue, store_id, user_id, priority, 'completed', attempt, max_attempts, payload, dedupe_key, progress, errors, null, run_at, created_at, started_at, now() from gone`,
      [done.job.id],
    )
    await waitFor(async () => !(await exists(unused)) && !(await exists(finished)), { what: 'the sweep to delete the expired uploads' })
    expect(await exists(imported)).toBe(true)
  })
})
