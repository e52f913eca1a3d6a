import { Writable } from 'node:stream'
import { createApiKey, enqueue } from '@backroom/queue-core'
import { useTestDatabase } from '@backroom/queue-core/testing'
import type { FastifyInstance } from 'fastify'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.ts'
import { errorShapeProblem } from './fuzz/response-problem.ts'

/**
 * Found by the OpenAPI fuzz (test/fuzz-openapi.test.ts): requests racing on
 * one job, as a client retrying on a timeout or two operators at once do.
 */
const t = useTestDatabase()
let app: FastifyInstance
let auth: { authorization: string }
const errorLines: string[] = []

beforeAll(async () => {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      errorLines.push(chunk.toString('utf8'))
      done()
    },
  })
  app = buildApp({ db: t.db, logger: pino({ level: 'error' }, sink) })
  await app.ready()
  auth = { authorization: `Bearer ${(await createApiKey(t.db.kysely, { storeId: null })).key}` }
})
afterAll(async () => {
  await app?.close()
})

/** Rounds of the race: each round is a fresh job and six operations on it at once. */
const ROUNDS = 40

describe('cancels and retries of one job at the same time', () => {
  it('answer 200 or 409, never a 404 or a 5xx, and leave the job in exactly one table', async () => {
    const statuses = new Map<string, number>()
    for (let round = 0; round < ROUNDS; round++) {
      const { job } = await enqueue(t.db.kysely, { type: 'system.canary', storeId: 'store-race', payload: {}, delayMs: 3_600_000 })
      const answers = await Promise.all(
        Array.from({ length: 6 }, (_, i) => app.inject({ method: 'POST', url: `/v1/jobs/${job.id}/${i % 2 === 0 ? 'cancel' : 'retry'}`, headers: auth })),
      )
      for (const [i, res] of answers.entries()) {
        const key = `${i % 2 === 0 ? 'cancel' : 'retry'} ${res.statusCode}`
        statuses.set(key, (statuses.get(key) ?? 0) + 1)
        if (res.statusCode !== 200) expect(errorShapeProblem(res.body), res.body).toBeNull()
      }
      const { rows } = await t.db.pool.query<{ n: number }>(
        'select (select count(*) from jobs where id = $1)::int + (select count(*) from job_history where id = $1)::int as n',
        [job.id],
      )
      expect(rows[0]!.n, `job ${job.id} rows`).toBe(1)
    }
    const summary = [...statuses].sort().map(([k, n]) => `${k}: ${n}`).join(', ')
    // Two retries both moved the same history row back: "duplicate key value violates unique constraint jobs_pkey", a 500.
    expect([...statuses.keys()].filter((k) => / 5\d\d$/.test(k)), summary).toEqual([])
    expect(errorLines.filter((line) => line.includes('request failed')).slice(0, 1)).toEqual([])
    // A job that exists is never 404, even while it moves between jobs and job_history
    // (getById reads both tables in one statement, so in one snapshot).
    expect([...statuses.keys()].every((k) => / (200|409)$/.test(k)), summary).toBe(true)
    expect(statuses.get('retry 200') ?? 0, summary).toBeGreaterThan(0)
  })
})
