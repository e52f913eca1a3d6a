import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { connect, createApiKey, enqueue, enqueueMany } from '@backroom/queue-core'
import { useTestDatabase, waitFor } from '@backroom/queue-core/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.ts'
import { createRng } from './fuzz/create-rng.ts'
import { listeningUrl, spawnService, type RunningService } from './support/spawn-service.ts'

/**
 * Several stores attack the API at once over a real port (enqueue floods,
 * batches at and past the limit, bodies past the limit, uploads past the
 * quota and the upload rate, list scans and stats reads as fast as their
 * sockets allow) while one store enqueues and reads at a normal rate. The
 * API runs as its own process, as deployed. Asserted: statuses and bounds
 * that do not depend on the machine's speed; latencies are printed as
 * figures, never asserted.
 */
const t = useTestDatabase()

const ATTACKERS = ['attacker-1', 'attacker-2', 'attacker-3', 'attacker-4', 'attacker-5']
/** Requests each attacker keeps in flight (one socket each). */
const LANES_PER_ATTACKER = 12
const GOOD_STORE = 'well-behaved'
/** The good store's rounds (enqueue, read it, list its newest), one round every ROUND_MS: about 10 requests a second. */
const GOOD_ROUNDS = 50
const ROUND_MS = 300
const STORE_RATE = 50
const UPLOAD_QUOTA = 2 * 1024 * 1024
const POOL_MAX = 10
/** Jobs each attacker store holds before the attack, so its list scans read real pages. */
const SEEDED_JOBS = 1_000

interface Answer {
  readonly store: string
  readonly kind: string
  /** The HTTP status, or 0 when the connection failed before an answer arrived. */
  readonly status: number
  readonly code: string | null
  readonly retryAfter: string | null
  readonly ms: number
  readonly error?: string
}

let api: RunningService
let base: string
const keys = new Map<string, string>()
const answers: Answer[] = []

beforeAll(async () => {
  api = spawnService(
    'api',
    {
      DATABASE_URL: t.url,
      PORT: '0',
      LOG_LEVEL: 'info',
      DB_POOL_MAX: String(POOL_MAX),
      API_STORE_RATE: String(STORE_RATE),
      API_UPLOAD_STORE_QUOTA_BYTES: String(UPLOAD_QUOTA),
      API_UPLOAD_RATE_PER_MINUTE: '10',
    },
    { keepOutputChars: 200_000 },
  )
  base = await listeningUrl(api)
  for (const store of [...ATTACKERS, GOOD_STORE]) keys.set(store, (await createApiKey(t.db.kysely, { storeId: store })).key)
  for (const store of ATTACKERS) {
    await enqueueMany(t.db.kysely, Array.from({ length: SEEDED_JOBS }, (_, i) => ({ type: 'system.canary', storeId: store, payload: {}, delayMs: 3_600_000 + i })))
  }
})
afterAll(async () => {
  await api?.stop()
})

/** One request as `store`; its answer, timing and error code are recorded. */
async function send(store: string, kind: string, method: string, path: string, body?: { type: string; data: string | Buffer }): Promise<{ status: number; json: any }> {
  const started = performance.now()
  try {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${keys.get(store)}`, ...(body ? { 'content-type': body.type } : {}) },
      body: body?.data,
    })
    const text = await res.text()
    let json: any = null
    try {
      json = JSON.parse(text)
    } catch {
      // Not JSON: recorded without a code, which the assertions refuse for a 4xx.
    }
    answers.push({ store, kind, status: res.status, code: json?.error?.code ?? null, retryAfter: res.headers.get('retry-after'), ms: performance.now() - started })
    return { status: res.status, json }
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? String(err)
    answers.push({ store, kind, status: 0, code: null, retryAfter: null, ms: performance.now() - started, error: cause })
    return { status: 0, json: null }
  }
}

const canary = { type: 'system.canary', payload: {} }
const batch = (n: number) => JSON.stringify({ jobs: Array.from({ length: n }, () => canary) })
/** A CSV feed of about `bytes` bytes. */
const feed = (bytes: number) => Buffer.from(`sku,title,price,currency\n${'x,t,1.00,EUR\n'.repeat(Math.ceil(bytes / 13))}`)
const BIG_FEED = feed(3 * 1024 * 1024)
const SMALL_FEED = feed(64 * 1024)
const FULL_BATCH = batch(1_000)
const OVER_BATCH = batch(1_001)
const OVER_BODY = JSON.stringify({ ...canary, storeId: undefined, payload: { pad: 'p'.repeat(300 * 1024) } })

/** One attacker's socket: attacks drawn at random until `stop()` says so. */
async function attackLane(store: string, seed: number, stop: () => boolean): Promise<void> {
  const rng = createRng(seed)
  while (!stop()) {
    const roll = rng.int(1, 100)
    if (roll <= 30) await send(store, 'enqueue', 'POST', '/v1/jobs', { type: 'application/json', data: JSON.stringify(canary) })
    else if (roll <= 40) await send(store, 'batch 1000', 'POST', '/v1/jobs/batch', { type: 'application/json', data: FULL_BATCH })
    else if (roll <= 43) await send(store, 'batch 1001', 'POST', '/v1/jobs/batch', { type: 'application/json', data: OVER_BATCH })
    else if (roll <= 46) await send(store, 'body over limit', 'POST', '/v1/jobs', { type: 'application/json', data: OVER_BODY })
    else if (roll <= 49) await send(store, 'upload 3 MiB', 'POST', '/v1/uploads?format=csv', { type: 'text/csv', data: BIG_FEED })
    else if (roll <= 52) await send(store, 'upload 64 KiB', 'POST', '/v1/uploads?format=csv', { type: 'text/csv', data: SMALL_FEED })
    else if (roll <= 85) {
      // A scan: newest 100, then the pages after it.
      let cursor: string | null = null
      for (let page = 0; page < 3; page++) {
        const res: { status: number; json: any } = await send(store, 'list 100', 'GET', `/v1/jobs?limit=100${cursor ? `&cursor=${cursor}` : ''}`)
        cursor = res.json?.nextCursor ?? null
        if (cursor === null) break
      }
    } else if (roll <= 88) await send(store, 'list 100000', 'GET', '/v1/jobs?limit=100000')
    else await send(store, 'stats', 'GET', '/v1/stats')
  }
}

/** The well-behaved store: enqueue one job, read it, list its newest, once a round. */
async function goodStore(): Promise<void> {
  for (let round = 0; round < GOOD_ROUNDS; round++) {
    const started = performance.now()
    const created = await send(GOOD_STORE, 'enqueue', 'POST', '/v1/jobs', { type: 'application/json', data: JSON.stringify(canary) })
    if (created.json?.job?.id) await send(GOOD_STORE, 'read', 'GET', `/v1/jobs/${created.json.job.id}`)
    await send(GOOD_STORE, 'list', 'GET', '/v1/jobs?limit=10')
    await sleep(Math.max(0, ROUND_MS - (performance.now() - started)))
  }
}

/** The API process's resident memory (Linux /proc), in bytes; null elsewhere. */
function residentBytes(pid: number): number | null {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return match ? Number(match[1]) * 1024 : null
  } catch {
    return null
  }
}

/** The API's pool as its /metrics reports it. */
async function poolFigures(): Promise<{ waiting: number; total: number } | null> {
  try {
    const text = await (await fetch(`${base}/metrics`)).text()
    const read = (state: string) => Number(new RegExp(`backroom_db_pool_connections\\{state="${state}"\\} (\\d+)`).exec(text)?.[1] ?? NaN)
    return { waiting: read('waiting'), total: read('total') }
  } catch {
    return null
  }
}

function percentile(values: ReadonlyArray<number>, p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN
}

describe('stores abusing the API at once', () => {
  it('keep getting 429/413 with codes while a well-behaved store keeps getting 2xx, with the pool and memory bounded', async () => {
    const pid = api.child.pid!
    const rssBefore = residentBytes(pid)
    let stopped = false
    const samples: Array<{ rss: number | null; waiting: number; poolTotal: number; serverConnections: number }> = []
    const sampler = (async () => {
      while (!stopped) {
        const [pool, activity] = await Promise.all([
          poolFigures(),
          t.db.pool.query<{ n: number }>(`select count(*)::int as n from pg_stat_activity where application_name = 'backroom-api' and datname = current_database()`),
        ])
        samples.push({ rss: residentBytes(pid), waiting: pool?.waiting ?? NaN, poolTotal: pool?.total ?? NaN, serverConnections: activity.rows[0]!.n })
        await sleep(200)
      }
    })()
    const started = performance.now()
    const lanes = ATTACKERS.flatMap((store, s) => Array.from({ length: LANES_PER_ATTACKER }, (_, lane) => attackLane(store, s * 100 + lane, () => stopped)))
    await goodStore()
    stopped = true
    await Promise.all([...lanes, sampler])
    const seconds = (performance.now() - started) / 1000

    const good = answers.filter((a) => a.store === GOOD_STORE)
    const attacks = answers.filter((a) => a.store !== GOOD_STORE)
    const count = (list: ReadonlyArray<Answer>, key: (a: Answer) => string) => {
      const m = new Map<string, number>()
      for (const a of list) m.set(key(a), (m.get(key(a)) ?? 0) + 1)
      return [...m].sort().map(([k, n]) => `${k}: ${n}`).join(', ')
    }
    const goodMs = good.map((a) => a.ms)
    const rssPeak = Math.max(...samples.map((s) => s.rss ?? 0))
    console.info(
      `store-abuse: ${answers.length} requests in ${seconds.toFixed(1)} s (${attacks.length} from ${ATTACKERS.length} attackers × ${LANES_PER_ATTACKER} sockets, ${good.length} from the well-behaved store)\n` +
        `  attackers by kind and status: ${count(attacks, (a) => `${a.kind} ${a.status}${a.code ? ` ${a.code}` : ''}${a.error ? ` ${a.error}` : ''}`)}\n` +
        `  well-behaved: ${count(good, (a) => `${a.kind} ${a.status}`)}; latency p50 ${percentile(goodMs, 50).toFixed(0)} ms, p99 ${percentile(goodMs, 99).toFixed(0)} ms, max ${Math.max(...goodMs).toFixed(0)} ms\n` +
        `  pool (max ${POOL_MAX}): waiting max ${Math.max(...samples.map((s) => s.waiting))}, samples with waiting > 0: ${samples.filter((s) => s.waiting > 0).length} of ${samples.length}; ` +
        `server connections max ${Math.max(...samples.map((s) => s.serverConnections))}\n` +
        `  API RSS: before ${((rssBefore ?? 0) / 2 ** 20).toFixed(0)} MiB, peak ${(rssPeak / 2 ** 20).toFixed(0)} MiB`,
    )

    // The well-behaved store never noticed: every answer a 2xx.
    expect(good.length).toBe(GOOD_ROUNDS * 3)
    expect(good.filter((a) => a.status < 200 || a.status >= 300).map((a) => `${a.kind} ${a.status} ${a.code ?? a.error ?? ''}`)).toEqual([])
    // Attackers: refused in the contract's terms, never a 5xx.
    expect(attacks.filter((a) => a.status >= 500).map((a) => `${a.kind} ${a.status} ${a.code}`)).toEqual([])
    expect(attacks.filter((a) => a.status >= 400 && a.code === null).map((a) => `${a.kind} ${a.status}`)).toEqual([])
    expect(attacks.filter((a) => a.status === 429 && a.retryAfter === null).length).toBe(0)
    expect(attacks.some((a) => a.status === 429 && a.code === 'rate_limited')).toBe(true)
    expect(attacks.some((a) => a.status === 413 && a.code === 'payload_too_large')).toBe(true)
    expect(attacks.some((a) => a.status === 400 && a.code === 'batch_too_large')).toBe(true)
    // A refused upload may be cut off while its body is still being sent (the API closes the connection on refusal); nothing else may fail on the wire.
    expect(attacks.filter((a) => a.status === 0 && !a.kind.startsWith('upload')).map((a) => `${a.kind} ${a.error}`)).toEqual([])
    // The pool never grows past its size, and the API process's memory stays bounded.
    expect(Math.max(...samples.map((s) => s.serverConnections))).toBeLessThanOrEqual(POOL_MAX)
    if (rssBefore !== null) expect(rssPeak).toBeLessThan(rssBefore + 256 * 2 ** 20)
  }, 180_000)
})

describe('a store whose requests hang on the database', () => {
  it('holds only its share of the pool: another store\'s requests still get connections', async () => {
    // The app's own pool, of the default size, so the test's pool stays free for the lock and the checks.
    const db = connect({ connectionString: t.url, max: POOL_MAX, applicationName: 'backroom-api-fair-share' })
    const app = buildApp({ db })
    try {
      await app.ready()
      const hog = (await createApiKey(t.db.kysely, { storeId: 'hog' })).key
      const other = (await createApiKey(t.db.kysely, { storeId: 'other' })).key
      const { job } = await enqueue(t.db.kysely, { type: 'system.canary', storeId: 'hog', payload: {} })
      // A transaction holds the job's row: each cancel of it waits on the lock, holding its connection.
      const locker = await t.db.pool.connect()
      await locker.query('begin')
      await locker.query('select id from jobs where id = $1 for update', [job.id])
      try {
        const hogs = Array.from({ length: 3 * POOL_MAX }, () => app.inject({ method: 'POST', url: `/v1/jobs/${job.id}/cancel`, headers: { authorization: `Bearer ${hog}` } }))
        const blocked = () =>
          t.db.pool
            .query<{ n: number }>(`select count(*)::int as n from pg_stat_activity where application_name = 'backroom-api-fair-share' and wait_event_type = 'Lock'`)
            .then((r) => r.rows[0]!.n)
        // The hog's cancels are waiting on the lock before the other store asks anything.
        await waitFor(async () => (await blocked()) >= 2, { what: "the hog's cancels to wait on the row lock" })
        const answer = await app.inject({ method: 'GET', url: '/v1/jobs', headers: { authorization: `Bearer ${other}` } })
        // Answered while the hog's requests still hang: the other store did not wait for them.
        expect(answer.statusCode, answer.body).toBe(200)
        expect(await blocked(), 'the hog still waits').toBeGreaterThanOrEqual(2)
        await locker.query('rollback')
        const hogAnswers = await Promise.all(hogs)
        // Once the lock goes, the hog's requests are answered too (the first cancels, the rest see a cancelled
        // job), except those past its queue, refused at once with a 429.
        expect(hogAnswers.filter((r) => r.statusCode !== 200 && !(r.statusCode === 429 && r.json().error.code === 'too_many_requests')).map((r) => `${r.statusCode} ${r.body}`)).toEqual([])
        expect(hogAnswers.some((r) => r.statusCode === 429 && r.headers['retry-after'] !== undefined)).toBe(true)
      } finally {
        await locker.query('rollback').catch(() => {})
        locker.release()
      }
    } finally {
      await app.close()
      await db.close()
    }
  }, 60_000)
})
