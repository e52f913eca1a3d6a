import { beforeAll, describe, expect, it } from 'vitest'
import { cancelJob } from './admin.ts'
import { ValidationError } from './errors.ts'
import { listJobs } from './list-jobs.ts'
import { insertJob } from './testing/fixtures.ts'
import { useTestDatabase } from './testing/use-test-database.ts'
import type { Job } from './types.ts'

const t = useTestDatabase()

/** Seeded once (the tests only read): ids ascending in enqueue order. */
let a1: Job, b1: Job, a2: Job, a3: Job, b2: Job, a4: Job

beforeAll(async () => {
  const db = t.db.kysely
  a1 = await insertJob(db, { storeId: 'store-a', type: 'sync.inventory', userId: 'user-1' })
  b1 = await insertJob(db, { storeId: 'store-b', type: 'sync.inventory' })
  a2 = await insertJob(db, { storeId: 'store-a', type: 'translation.ui', userId: 'user-2' })
  a3 = await insertJob(db, { storeId: 'store-a', type: 'sync.inventory', delayMs: 3_600_000 })
  b2 = await insertJob(db, { storeId: 'store-b', type: 'translation.ui' })
  a4 = await insertJob(db, { storeId: 'store-a', type: 'sync.inventory', userId: 'user-1' })
  // Finished jobs live in job_history: the list must include them in id order.
  await cancelJob(db, a2.id)
  await cancelJob(db, b1.id)
})

const ids = (jobs: ReadonlyArray<Job>) => jobs.map((j) => j.id)

describe('listJobs', () => {
  it('lists live and finished jobs together, newest first', async () => {
    const page = await listJobs(t.db.kysely)
    expect(ids(page.jobs)).toEqual(ids([a4, b2, a3, a2, b1, a1]))
    expect(page.jobs.find((j) => j.id === a2.id)).toMatchObject({ state: 'cancelled', storeId: 'store-a' })
    expect(page.jobs.find((j) => j.id === a2.id)?.finishedAt).toBeInstanceOf(Date)
    expect(page.nextCursor).toBeNull()
  })

  it('filters by state, type, store and user', async () => {
    const db = t.db.kysely
    expect(ids((await listJobs(db, { state: 'cancelled' })).jobs)).toEqual(ids([a2, b1]))
    expect(ids((await listJobs(db, { state: 'scheduled' })).jobs)).toEqual(ids([a3]))
    expect(ids((await listJobs(db, { type: 'translation.ui' })).jobs)).toEqual(ids([b2, a2]))
    expect(ids((await listJobs(db, { storeId: 'store-b' })).jobs)).toEqual(ids([b2, b1]))
    expect(ids((await listJobs(db, { userId: 'user-1' })).jobs)).toEqual(ids([a4, a1]))
    expect(ids((await listJobs(db, { storeId: 'store-a', type: 'sync.inventory', state: 'pending' })).jobs)).toEqual(ids([a4, a1]))
    expect((await listJobs(db, { state: 'completed' })).jobs).toEqual([])
  })

  it('filters by creation time: createdAfter inclusive, createdBefore exclusive', async () => {
    const db = t.db.kysely
    expect(ids((await listJobs(db, { createdAfter: a4.createdAt })).jobs)).toContain(a4.id)
    expect((await listJobs(db, { createdBefore: a1.createdAt })).jobs).toEqual([])
    expect((await listJobs(db, { createdAfter: new Date(Date.now() + 60_000) })).jobs).toEqual([])
  })

  it('pages with a cursor until every job was seen once', async () => {
    const seen: string[] = []
    let cursor: string | undefined
    let pages = 0
    do {
      const page = await listJobs(t.db.kysely, { limit: 4, cursor })
      seen.push(...ids(page.jobs))
      cursor = page.nextCursor ?? undefined
      pages++
    } while (cursor !== undefined)
    expect(pages).toBe(2)
    expect(seen).toEqual(ids([a4, b2, a3, a2, b1, a1]))
  })

  it('gives no next cursor when the page is exactly full', async () => {
    const page = await listJobs(t.db.kysely, { storeId: 'store-b', limit: 2 })
    expect(page.jobs).toHaveLength(2)
    expect(page.nextCursor).toBeNull()
  })

  it('keeps a store-scoped caller to its own store', async () => {
    const db = t.db.kysely
    expect(ids((await listJobs(db, {}, { storeId: 'store-b' })).jobs)).toEqual(ids([b2, b1]))
    expect(ids((await listJobs(db, { storeId: 'store-b' }, { storeId: 'store-b' })).jobs)).toEqual(ids([b2, b1]))
    expect(await listJobs(db, { storeId: 'store-a' }, { storeId: 'store-b' })).toEqual({ jobs: [], nextCursor: null })
  })

  it('rejects bad cursors, limits and filters with a ValidationError', async () => {
    const db = t.db.kysely
    for (const filters of [
      { cursor: 'not-a-cursor' },
      { cursor: Buffer.from('v1:0').toString('base64url') },
      { cursor: Buffer.from('v1:1; drop table jobs').toString('base64url') },
      { limit: 0 },
      { limit: 101 },
      { limit: 2.5 },
      { state: 'done' as never },
      { type: 'Not A Type' },
      { storeId: '' },
      { userId: 'u'.repeat(65) },
      { createdAfter: new Date('nope') },
    ]) {
      await expect(listJobs(db, filters), JSON.stringify(filters)).rejects.toBeInstanceOf(ValidationError)
    }
  })
})
