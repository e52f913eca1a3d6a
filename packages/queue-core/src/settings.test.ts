import { Type } from 'typebox'
import { describe, expect, it } from 'vitest'
import { connect } from './db/connect.ts'
import { enqueue, enqueueMany } from './enqueue.ts'
import { StoreCapacityError, ValidationError } from './errors.ts'
import { defineHandler } from './handler.ts'
import { configureJobType, setStoreLiveJobCap, setStoreTypeLimit, setStoreWeight } from './settings.ts'
import { useTestDatabase } from './testing/use-test-database.ts'
import { createWorkerPool } from './worker/worker-pool.ts'

const t = useTestDatabase()

const liveJobs = async (storeId: string) =>
  Number((await t.db.pool.query('select count(*) as n from jobs where store_id = $1', [storeId])).rows[0].n)
const costOf = async (id: string) => Number((await t.db.pool.query('select cost from jobs where id = $1', [id])).rows[0].cost)

describe('store live-job cap', () => {
  it('refuses an enqueue past the cap with a typed error and a retry hint, writing nothing', async () => {
    await setStoreLiveJobCap(t.db.kysely, 'capped', 3)
    await enqueueMany(t.db.kysely, [1, 2, 3].map(() => ({ type: 'test.noop', storeId: 'capped' })))
    const refused = await enqueue(t.db.kysely, { type: 'test.noop', storeId: 'capped' }).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(StoreCapacityError)
    expect(refused).toMatchObject({ code: 'store_capacity', storeId: 'capped', cap: 3, live: 3 })
    // No completions in the last minute: the hint falls back to a minute.
    expect((refused as StoreCapacityError).retryAfterMs).toBe(60_000)
    expect(await liveJobs('capped')).toBe(3)

    // A batch with one store over its cap writes nothing at all, for any store.
    const mixed = await enqueueMany(t.db.kysely, [
      { type: 'test.noop', storeId: 'free' },
      { type: 'test.noop', storeId: 'capped' },
    ]).catch((e: unknown) => e)
    expect(mixed).toBeInstanceOf(StoreCapacityError)
    expect(await liveJobs('free')).toBe(0)

    // Running jobs count too, and lifting the cap lets the enqueue through.
    await t.db.pool.query(`update jobs set state = 'running', lease_token = gen_random_uuid(), locked_until = now() + interval '1 minute' where store_id = 'capped'`)
    await expect(enqueue(t.db.kysely, { type: 'test.noop', storeId: 'capped' })).rejects.toBeInstanceOf(StoreCapacityError)
    await setStoreLiveJobCap(t.db.kysely, 'capped', null)
    await enqueue(t.db.kysely, { type: 'test.noop', storeId: 'capped' })
    expect(await liveJobs('capped')).toBe(4)
  })

  it('estimates the retry hint from the store\'s recent completions', async () => {
    await setStoreLiveJobCap(t.db.kysely, 'busy', 2)
    await enqueueMany(t.db.kysely, [1, 2].map(() => ({ type: 'test.noop', storeId: 'busy' })))
    // 120 completions in the last minute: 2 a second, so one free place is about half a second away (at least 1 s).
    await t.db.pool.query(`
      insert into job_history (id, type, queue, store_id, priority, state, attempt, payload, errors, run_at, created_at, finished_at)
      select 1000000 + g, 'test.noop', 'default', 'busy', 5, 'completed', 1, '{}', '[]', now(), now(), now() - g * interval '0.4 s'
      from generate_series(1, 120) g`)
    const refused = (await enqueue(t.db.kysely, { type: 'test.noop', storeId: 'busy' }).catch((e: unknown) => e)) as StoreCapacityError
    expect(refused).toBeInstanceOf(StoreCapacityError)
    expect(refused.retryAfterMs).toBe(1_000)
  })
})

describe('store live-job cap under concurrent enqueues', () => {
  it('holds exactly when many connections race for the last places', async () => {
    await setStoreLiveJobCap(t.db.kysely, 'race', 20)
    const pools = Array.from({ length: 10 }, () => connect({ connectionString: t.url, max: 1 }))
    const outcomes: Array<'ok' | 'refused'> = []
    try {
      await Promise.all(
        pools.map(async (db) => {
          for (let i = 0; i < 5; i++) {
            try {
              await enqueue(db.kysely, { type: 'test.noop', storeId: 'race' })
              outcomes.push('ok')
            } catch (err) {
              if (!(err instanceof StoreCapacityError)) throw err
              outcomes.push('refused')
            }
          }
        }),
      )
    } finally {
      await Promise.all(pools.map((p) => p.close()))
    }
    expect(outcomes.filter((o) => o === 'ok')).toHaveLength(20)
    expect(outcomes.filter((o) => o === 'refused')).toHaveLength(30)
    expect(await liveJobs('race')).toBe(20)
  })
})

describe('job type cost', () => {
  it('comes from the enqueue, else the operator, else the handler declaration, else 1', async () => {
    const plain = await enqueue(t.db.kysely, { type: 'test.plain', storeId: 's' })
    expect(await costOf(plain.job.id)).toBe(1)

    // A worker records what its handlers declare.
    const heavy = defineHandler({ type: 'test.heavy', payload: Type.Object({}), cost: 3, run() {} })
    const pool = createWorkerPool({ db: t.db.kysely, connectionString: t.url, handlers: [heavy], maintenance: false, listen: false })
    await pool.start()
    await pool.stop()
    await t.db.pool.query('delete from jobs')
    const declared = await enqueue(t.db.kysely, { type: 'test.heavy', storeId: 's', delayMs: 60_000 })
    expect(await costOf(declared.job.id)).toBe(3)

    await configureJobType(t.db.kysely, 'test.heavy', { cost: 5 })
    const overridden = await enqueue(t.db.kysely, { type: 'test.heavy', storeId: 's', delayMs: 60_000 })
    expect(await costOf(overridden.job.id)).toBe(5)
    const own = await enqueue(t.db.kysely, { type: 'test.heavy', storeId: 's', cost: 2, delayMs: 60_000 })
    expect(await costOf(own.job.id)).toBe(2)

    // Clearing the override falls back to the declaration; other columns stay as they were.
    await configureJobType(t.db.kysely, 'test.heavy', { maxRunning: 7 })
    await configureJobType(t.db.kysely, 'test.heavy', { cost: null })
    const back = await enqueue(t.db.kysely, { type: 'test.heavy', storeId: 's', delayMs: 60_000 })
    expect(await costOf(back.job.id)).toBe(3)
    const row = (await t.db.pool.query(`select max_running from job_types where type = 'test.heavy'`)).rows[0]
    expect(row.max_running).toBe(7)
  })
})

describe('settings input', () => {
  it('rejects bad values with ValidationError and writes nothing', async () => {
    await expect(setStoreWeight(t.db.kysely, 's', 0)).rejects.toBeInstanceOf(ValidationError)
    await expect(setStoreWeight(t.db.kysely, '', 1)).rejects.toBeInstanceOf(ValidationError)
    await expect(configureJobType(t.db.kysely, 'Bad Type', { cost: 1 })).rejects.toBeInstanceOf(ValidationError)
    await expect(configureJobType(t.db.kysely, 'test.x', { maxRunning: 0 })).rejects.toBeInstanceOf(ValidationError)
    await expect(configureJobType(t.db.kysely, 'test.x', { maxRunningPerStore: 1.5 })).rejects.toBeInstanceOf(ValidationError)
    await expect(setStoreTypeLimit(t.db.kysely, 's', 'test.x', -1)).rejects.toBeInstanceOf(ValidationError)
    await expect(setStoreLiveJobCap(t.db.kysely, 's', 0)).rejects.toBeInstanceOf(ValidationError)
    const { rows } = await t.db.pool.query(
      `select (select count(*) from job_types where type = 'test.x')::int as types, (select count(*) from store_type_limits)::int as limits`,
    )
    expect(rows[0]).toEqual({ types: 0, limits: 0 })
  })
})
