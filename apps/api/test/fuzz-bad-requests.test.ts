import { connect, createApiKey, defineHandler, drainWithinBudget, enqueue, getJob, PermanentError, revokeApiKey } from '@backroom/queue-core'
import { useTestDatabase } from '@backroom/queue-core/testing'
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.ts'
import { generateBadRequest, type BadRequest, type FuzzWorld } from './fuzz/bad-requests.ts'
import { createRng } from './fuzz/create-rng.ts'
import { KNOWN_BUGS } from './fuzz/known-bugs.ts'
import { errorShapeProblem, responseProblem } from './fuzz/response-problem.ts'
import { tableFingerprint } from './fuzz/table-fingerprint.ts'
import { capturingLogger } from './support/capturing-logger.ts'

/** Replay a failure with FUZZ_SEED=<seed> (and FUZZ_COUNT to go further). */
const SEED = Number(process.env.FUZZ_SEED ?? 20_250_611)
const COUNT = Number(process.env.FUZZ_COUNT ?? 3_000)
/** Requests in flight at once: enough to overlap database round trips on 2 cores, few enough to keep order-independent failures readable. */
const CONCURRENCY = 4
const ADMIN_KEY = 'admin-key-for-the-fuzz-test-0123456789abcdef'
const CRON_SECRET = 'cron-secret-for-the-fuzz-test-0123456789'
const MARKER = 'PAYLOAD-MARKER-7f3a9c'

const t = useTestDatabase()
let app: FastifyInstance
let world: FuzzWorld
let handlerLoads = 0
const logLines: string[] = []

/** A job that completed in store-a and one that failed for good in store-b, through a real drain. */
async function finishedJobs(): Promise<{ completedA: string; failedB: string }> {
  const ok = defineHandler({ type: 'fuzz.ok', payload: Type.Object({}), run: () => undefined })
  const bad = defineHandler({
    type: 'fuzz.bad',
    payload: Type.Object({}),
    run: () => {
      throw new PermanentError('always')
    },
  })
  const completed = await enqueue(t.db.kysely, { type: 'fuzz.ok', storeId: 'store-a', payload: {} })
  const failed = await enqueue(t.db.kysely, { type: 'fuzz.bad', storeId: 'store-b', payload: {} })
  await drainWithinBudget(t.db.kysely, { handlers: [ok, bad], maxJobs: 10, budgetMs: 10_000 })
  expect((await getJob(t.db.kysely, completed.job.id)).state).toBe('completed')
  expect((await getJob(t.db.kysely, failed.job.id)).state).toBe('failed')
  return { completedA: completed.job.id, failedB: failed.job.id }
}

beforeAll(async () => {
  const key = async (storeId: string | null) => (await createApiKey(t.db.kysely, { storeId })).key
  const revoked = await createApiKey(t.db.kysely, { storeId: 'store-a' })
  await revokeApiKey(t.db.kysely, revoked.keyId)
  const finished = await finishedJobs()
  const pending = await enqueue(t.db.kysely, { type: 'system.canary', storeId: 'store-a', payload: {} })
  world = {
    keys: { platform: await key(null), admin: ADMIN_KEY, storeA: await key('store-a'), storeB: await key('store-b') },
    revokedKey: revoked.key,
    cronSecret: CRON_SECRET,
    batchLimit: 5,
    bodyLimit: 16 * 1024,
    jobs: { pendingA: pending.job.id, ...finished },
    marker: MARKER,
  }
  app = buildApp({
    db: t.db,
    logger: capturingLogger(logLines),
    adminKey: ADMIN_KEY,
    cronSecret: CRON_SECRET,
    // Every drain request is refused, so handler code must never load.
    loadHandlers: async () => {
      handlerLoads++
      return []
    },
    batchLimit: world.batchLimit,
    bodyLimit: world.bodyLimit,
  })
  await app.ready()
  // Printed so a failing run can be replayed exactly (FUZZ_SEED).
  console.info(`fuzz-bad-requests: seed ${SEED}, ${COUNT} requests`)
})
afterAll(async () => {
  await app?.close()
})

function send(target: FastifyInstance, request: BadRequest) {
  return target.inject({
    method: request.method as 'GET',
    url: request.url,
    headers: request.headers,
    ...(request.body === undefined ? {} : { payload: request.body }),
  })
}

/** The request with live tokens replaced by their role, for failure reports. */
function describeRequest(request: BadRequest): string {
  let text = JSON.stringify({ method: request.method, url: request.url, headers: request.headers, body: request.body?.slice(0, 600) })
  for (const [role, token] of Object.entries({ ...world.keys, revoked: world.revokedKey, cron: world.cronSecret })) {
    text = text.replaceAll(token, `<${role} key>`)
  }
  return `${request.label}\n    ${text}`
}

/** Runs `work` over `items` with at most `limit` in flight. */
async function inPool<T>(items: ReadonlyArray<T>, limit: number, work: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0
  const lane = async () => {
    while (next < items.length) {
      const index = next++
      await work(items[index]!, index)
    }
  }
  await Promise.all(Array.from({ length: limit }, lane))
}

describe('bad requests (fuzz)', () => {
  it(`answers ${COUNT} generated bad requests with a 4xx in the error shape and writes nothing (seed ${SEED})`, async () => {
    const before = await tableFingerprint(t.db)
    const rng = createRng(SEED)
    // Generated up front: the sequence depends on the seed alone, never on response timing.
    const requests = Array.from({ length: COUNT }, () => generateBadRequest(rng, world))
    const failures: string[] = []
    const statuses = new Map<number, number>()
    await inPool(requests, CONCURRENCY, async (request, index) => {
      try {
        const res = await send(app, request)
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
        const problem = responseProblem(request, res)
        if (problem) failures.push(`#${index} ${problem}: ${describeRequest(request)}\n    → ${res.statusCode} ${res.body.slice(0, 300)}`)
      } catch (err) {
        failures.push(`#${index} inject threw ${String(err)}: ${describeRequest(request)}`)
      }
    })
    const report = `seed ${SEED}: ${failures.length} of ${COUNT} requests answered wrongly; first ones:\n${failures.slice(0, 8).join('\n')}`
    expect(failures, report).toEqual([])

    // The generators reach every kind of refusal (a fuzz stuck on one branch proves little).
    for (const status of [400, 401, 403, 404, 409, 413, 415]) expect(statuses.get(status) ?? 0, `status ${status}`).toBeGreaterThan(0)
    expect(await tableFingerprint(t.db)).toEqual(before)
    expect(handlerLoads).toBe(0)
  })

  it('never logs a key, the cron secret or a payload, and logs no request as failed', () => {
    expect(logLines.length).toBeGreaterThan(COUNT)
    const secrets = { ...world.keys, revoked: world.revokedKey, cron: CRON_SECRET }
    const text = logLines.join('')
    for (const [role, secret] of Object.entries(secrets)) expect(text.includes(secret), `${role} key in the logs`).toBe(false)
    expect(text.includes(MARKER), 'a payload value in the logs').toBe(false)
    // Level 50 (error) is the error handler's "request failed": only ever for a 5xx.
    expect(logLines.filter((line) => (JSON.parse(line) as { level: number }).level >= 50)).toEqual([])
  })
})

describe('a 5xx', () => {
  it('carries only internal_error: no stack, no SQL, no connection detail (the cause goes to the log)', async () => {
    const db = connect({ connectionString: t.url, max: 1 })
    await db.close()
    const lines: string[] = []
    const broken = buildApp({ db, logger: capturingLogger(lines), adminKey: ADMIN_KEY })
    try {
      const auth = { authorization: `Bearer ${ADMIN_KEY}` }
      const requests: ReadonlyArray<BadRequest> = [
        { label: 'list', method: 'GET', url: '/v1/jobs', headers: auth },
        { label: 'read', method: 'GET', url: '/v1/jobs/1', headers: auth },
        { label: 'stats', method: 'GET', url: '/v1/stats', headers: auth },
        { label: 'enqueue', method: 'POST', url: '/v1/jobs', headers: { ...auth, 'content-type': 'application/json' }, body: '{"type":"system.canary","payload":{},"storeId":"s"}' },
        { label: 'create key', method: 'POST', url: '/v1/keys', headers: { ...auth, 'content-type': 'application/json' }, body: '{}' },
        // A store key needs the database to be checked at all.
        { label: 'store key', method: 'GET', url: '/v1/jobs', headers: { authorization: `Bearer ${world.keys.storeA}` } },
      ]
      for (const request of requests) {
        const res = await send(broken, request)
        expect(res.statusCode, request.label).toBe(500)
        expect(res.json(), request.label).toEqual({ error: { code: 'internal_error', message: 'internal error' } })
        expect(errorShapeProblem(res.body)).toBeNull()
      }
      const logged = lines.map((line) => JSON.parse(line) as { level: number; msg: string; err?: { message?: string } })
      const failed = logged.filter((line) => line.level === 50 && line.msg === 'request failed')
      expect(failed).toHaveLength(requests.length)
      expect(failed.every((line) => typeof line.err?.message === 'string' && line.err.message.length > 0)).toBe(true)
    } finally {
      await broken.close()
    }
  })
})

/**
 * Bugs this fuzz found (see fuzz/known-bugs.ts): each test replays the
 * reproducing requests and asserts what the contract promises: a regression
 * test for a fixed bug, an `it.fails` for an open one (it fails today, so
 * vitest counts it as passing; once fixed it is reported, and gets `fixed`).
 */
describe('known bugs', () => {
  for (const bug of KNOWN_BUGS) {
    const test = bug.fixed ? it : it.fails
    test(bug.fixed ? `fixed: ${bug.title}` : bug.title, async () => {
      const before = await tableFingerprint(t.db)
      const wrong: string[] = []
      for (const request of bug.requests(world)) {
        const res = await send(app, request)
        const problem = responseProblem(request, res)
        if (problem) wrong.push(`${problem}: ${describeRequest(request)}\n    → ${res.statusCode} ${res.body.slice(0, 200)}`)
      }
      expect(wrong, wrong.join('\n')).toEqual([])
      expect(await tableFingerprint(t.db)).toEqual(before)
    })
  }
})
