import type { ServerResponse } from 'node:http'
import { getRateLimit, removeRateLimit, setRateLimit } from '@backroom/queue-core'
import { waitFor } from '@backroom/queue-core/testing'
import { Compile } from 'typebox/compile'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { startFakeServer, type FakeServer, type SeenRequest } from '../testing/fake-server.ts'
import { useHandlerTestBed } from '../testing/run-jobs.ts'
import { DEEPL_MAX_BODY_BYTES, DEEPL_MAX_TEXTS } from './deepl-client.ts'
import { canonicalLocale, createTranslateUi, type TranslateUiResult } from './translate-ui.ts'
import { TranslateUiPayload } from './translate-ui-payload.ts'
import type { TranslationDb, TranslationTables } from './translation-tables.ts'

const bed = useHandlerTestBed()
const API_KEY = 'test-deepl-key'
/** Mutable so one test can take DEEPL_API_URL away; the handler reads it per run. */
const env: Record<string, string | undefined> = { DEEPL_API_KEY: API_KEY, DEEPL_TIMEOUT_MS: '1000' }
let server: FakeServer
let db: TranslationDb

/** A /v2/translate request as the fake DeepL parsed it. */
interface DeeplCall {
  readonly req: SeenRequest
  readonly texts: ReadonlyArray<string>
  readonly targetLang: string
  readonly sourceLang: string
}
/** Every well-formed translate request, in arrival order (answered or not). */
let calls: DeeplCall[] = []
/** `TARGET|text` of every text the fake DeepL translated (answered 200). */
let translated: string[] = []
/**
 * A test's deviation from a healthy DeepL: given the call and its number
 * (1-based, per test), answer through `res` and return true, or return false
 * for the normal answer.
 */
let misbehave: (call: DeeplCall, n: number, res: ServerResponse) => boolean | Promise<boolean> = () => false

const json = (res: ServerResponse, status: number, body: unknown) =>
  void res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))

beforeAll(async () => {
  server = await startFakeServer(async (req, res) => {
    // The real protocol's refusals, so a client bug shows as a failed job.
    if (req.method !== 'POST' || req.path !== '/v2/translate') return json(res, 404, { message: 'Not found' })
    if (req.headers.authorization !== `DeepL-Auth-Key ${API_KEY}`) return json(res, 403, { message: 'Authorization failure' })
    if (Buffer.byteLength(req.body) > DEEPL_MAX_BODY_BYTES) return json(res, 413, { message: 'Request Entity Too Large' })
    const body = JSON.parse(req.body) as { text: string[]; target_lang: string; source_lang?: string }
    if (!Array.isArray(body.text) || body.text.length === 0 || body.text.length > DEEPL_MAX_TEXTS) {
      return json(res, 400, { message: 'Bad request. Reason: Too many texts' })
    }
    const call: DeeplCall = { req, texts: body.text, targetLang: body.target_lang, sourceLang: body.source_lang ?? '' }
    calls.push(call)
    if (await misbehave(call, calls.length, res)) return
    translated.push(...call.texts.map((t) => `${call.targetLang}|${t}`))
    json(res, 200, {
      translations: call.texts.map((t) => ({ detected_source_language: call.sourceLang, text: `[${call.targetLang}] ${t}` })),
    })
  })
  env.DEEPL_API_URL = server.url
  const deps = bed.deps(env)
  db = deps.shop.withTables<TranslationTables>()
  await bed.startWorker([createTranslateUi(deps)])
})
afterAll(() => server.close())
beforeEach(() => {
  calls = []
  translated = []
  misbehave = () => false
})

/** `n` strings with texts unique to `tag` (the memory is shared by every test of the file). */
function uiStrings(tag: string, n: number, from = 0) {
  return Array.from({ length: n }, (_, i) => ({ key: `${tag}.k${from + i}`, text: `${tag} text ${from + i}` }))
}

async function rows(storeId: string, locale: string) {
  return db
    .selectFrom('shop.ui_translations')
    .select(['key', 'text'])
    .where('store_id', '=', storeId)
    .where('locale', '=', locale)
    .orderBy('key')
    .execute()
}

function expectEachSentOnce(expected: ReadonlyArray<string>) {
  expect([...translated].sort()).toEqual([...expected].sort())
}

describe('translation.ui', () => {
  it('translates into every locale with the DeepL protocol and writes rows per store and locale', async () => {
    const strings = uiStrings('basic', 3)
    const job = await bed.enqueue({
      type: 'translation.ui',
      storeId: 'store-a',
      payload: { sourceLocale: 'en', targetLocales: ['de', 'PT-br'], strings },
    })
    const done = await bed.waitFinished(job.id)
    expect(done.state).toBe('completed')
    expect(done.result).toEqual({ locales: 2, strings: 3, uniqueTexts: 3, textsTranslated: 6, rowsWritten: 6 })
    // What reached DeepL is counted where it arrived, not in the store's result.
    expect(calls).toHaveLength(2)
    expect(calls.reduce((n, c) => n + c.texts.length, 0)).toBe(6)
    for (const call of calls) {
      expect(call.req.headers.authorization).toBe(`DeepL-Auth-Key ${API_KEY}`)
      expect(call.req.headers['content-type']).toBe('application/json')
      expect(call.req.headers['idempotency-key']).toMatch(new RegExp(`^backroom:translation.ui:${job.id}:deepl:`))
      expect(call.sourceLang).toBe('EN')
    }
    expect(calls.map((c) => c.targetLang).sort()).toEqual(['DE', 'PT-BR'])
    expect(await rows('store-a', 'de')).toEqual(strings.map((s) => ({ key: s.key, text: `[DE] ${s.text}` })))
    expect(await rows('store-a', 'pt-BR')).toEqual(strings.map((s) => ({ key: s.key, text: `[PT-BR] ${s.text}` })))
    expect(await rows('store-b', 'de')).toEqual([])
  })

  it('keeps every request within 50 texts and 128 KiB', async () => {
    // 120 short texts (count-bound) and 60 texts of 5,000 two-byte
    // characters (10 KB each as JSON: thirteen fill a request's 128 KiB).
    const short = uiStrings('batch', 120)
    const long = Array.from({ length: 60 }, (_, i) => ({ key: `batch.long${i}`, text: `${i}`.padEnd(5_000, 'ü') }))
    const job = await bed.enqueue({
      type: 'translation.ui',
      payload: { sourceLocale: 'en', targetLocales: ['fr'], strings: [...short, ...long] },
    })
    const done = await bed.waitFinished(job.id)
    expect(done.state).toBe('completed')
    for (const call of calls) {
      expect(call.texts.length).toBeLessThanOrEqual(DEEPL_MAX_TEXTS)
      expect(Buffer.byteLength(call.req.body)).toBeLessThanOrEqual(DEEPL_MAX_BODY_BYTES)
    }
    // Both limits bind: some requests are full by count, others by bytes.
    expect(calls.some((c) => c.texts.length === DEEPL_MAX_TEXTS)).toBe(true)
    expect(calls.some((c) => c.texts.length < DEEPL_MAX_TEXTS && Buffer.byteLength(c.req.body) > DEEPL_MAX_BODY_BYTES - 10_002)).toBe(true)
    // Greedy packing in hash order: near the ~600 KB / 128 KiB lower bound.
    const totalBytes = calls.reduce((n, c) => n + Buffer.byteLength(c.req.body), 0)
    expect(calls.length).toBeLessThanOrEqual(Math.ceil(totalBytes / DEEPL_MAX_BODY_BYTES) + 2)
    expectEachSentOnce([...short, ...long].map((s) => `FR|${s.text}`))
  })

  it('sends a repeated text once, within a job and across jobs and stores', async () => {
    const strings = [
      { key: 'rep.add', text: 'rep Add to cart' },
      { key: 'rep.buy', text: 'rep Buy now' },
      { key: 'rep.add2', text: 'rep Add to cart' },
    ]
    const first = await bed.enqueue({ type: 'translation.ui', storeId: 'store-a', payload: { sourceLocale: 'en', targetLocales: ['de'], strings } })
    expect((await bed.waitFinished(first.id)).state).toBe('completed')
    expectEachSentOnce(['DE|rep Add to cart', 'DE|rep Buy now'])

    const second = await bed.enqueue({ type: 'translation.ui', storeId: 'store-b', payload: { sourceLocale: 'EN', targetLocales: ['DE'], strings } })
    const done = await bed.waitFinished(second.id)
    expect(done.state).toBe('completed')
    expect((done.result as TranslateUiResult).textsTranslated).toBe(2)
    expect(calls).toHaveLength(1)
    expect(await rows('store-b', 'de')).toEqual([
      { key: 'rep.add', text: '[DE] rep Add to cart' },
      { key: 'rep.add2', text: '[DE] rep Add to cart' },
      { key: 'rep.buy', text: '[DE] rep Buy now' },
    ])
  })

  it('shows a store the same figures whether or not another store had the texts translated before', async () => {
    // The memory is shared: what a store sees must not tell it what other stores translate.
    const strings = uiStrings('private', 4)
    const payload = { sourceLocale: 'en', targetLocales: ['de', 'en-GB', 'ja'], strings }
    const first = await bed.enqueue({ type: 'translation.ui', storeId: 'store-first', payload })
    const d1 = await bed.waitFinished(first.id)
    expect(calls).toHaveLength(2)
    const second = await bed.enqueue({ type: 'translation.ui', storeId: 'store-second', payload })
    const d2 = await bed.waitFinished(second.id)
    expect([d1.state, d2.state]).toEqual(['completed', 'completed'])
    // The second store's texts came from the memory: DeepL was not called again.
    expect(calls).toHaveLength(2)
    expect(d2.result).toEqual(d1.result)
    expect(d2.progress).toEqual(d1.progress)
    expect(d2.result).toEqual({ locales: 3, strings: 4, uniqueTexts: 4, textsTranslated: 8, rowsWritten: 12 })
  })

  it('two jobs running at once with overlapping strings send each text once', async () => {
    // The first request is held until the other job has sent one too, so
    // both jobs are mid-flight with reservations at the same time.
    const jobOf = (call: DeeplCall) => String(call.req.headers['idempotency-key']).split(':')[2]
    let bothSending!: () => void
    const barrier = new Promise<void>((resolve) => (bothSending = resolve))
    misbehave = async () => {
      if (new Set(calls.map(jobOf)).size > 1) bothSending()
      await Promise.race([barrier, new Promise((r) => setTimeout(r, 5_000))])
      return false
    }
    const a = uiStrings('conc', 80, 0)
    const b = uiStrings('conc', 80, 40)
    const [ja, jb] = await Promise.all([
      bed.enqueue({ type: 'translation.ui', storeId: 'store-a', payload: { sourceLocale: 'en', targetLocales: ['de', 'fr'], strings: a } }),
      bed.enqueue({ type: 'translation.ui', storeId: 'store-b', payload: { sourceLocale: 'en', targetLocales: ['de', 'fr'], strings: b } }),
    ])
    const [da, db2] = await Promise.all([bed.waitFinished(ja!.id), bed.waitFinished(jb!.id)])
    expect([da.state, db2.state]).toEqual(['completed', 'completed'])
    const all = uiStrings('conc', 120).flatMap((s) => [`DE|${s.text}`, `FR|${s.text}`])
    expectEachSentOnce(all)
    expect(calls.reduce((n, c) => n + c.texts.length, 0)).toBe(240)
    expect(await rows('store-a', 'fr')).toHaveLength(80)
    expect((await rows('store-b', 'de'))[0]).toEqual({ key: 'conc.k100', text: '[DE] conc text 100' })
    expect([da.attempt, db2.attempt]).toEqual([1, 1])
    expect(new Set(calls.map(jobOf))).toEqual(new Set([ja!.id, jb!.id]))
  })

  it('a job that finds its texts reserved by a running job snoozes, then picks up that job\'s results', async () => {
    let release!: () => void
    const held = new Promise<void>((resolve) => (release = resolve))
    misbehave = async () => {
      await held
      return false
    }
    const strings = uiStrings('wait', 30)
    const first = await bed.enqueue({ type: 'translation.ui', storeId: 'store-a', payload: { sourceLocale: 'en', targetLocales: ['es'], strings } })
    await waitFor(() => calls.length === 1, { what: 'the first job to be sending' })
    const second = await bed.enqueue({ type: 'translation.ui', storeId: 'store-b', payload: { sourceLocale: 'en', targetLocales: ['es'], strings } })
    await bed.waitJob(second.id, (j) => j.state === 'scheduled')
    release()
    const [d1, d2] = await Promise.all([bed.waitFinished(first.id), bed.waitFinished(second.id)])
    expect([d1.state, d2.state]).toEqual(['completed', 'completed'])
    expect(d2.attempt).toBe(1)
    expect(d2.errors).toEqual([])
    expect((d2.result as TranslateUiResult).textsTranslated).toBe(30)
    expect(calls).toHaveLength(1)
    expectEachSentOnce(strings.map((s) => `ES|${s.text}`))
    expect(await rows('store-b', 'es')).toHaveLength(30)
  })

  it('snoozes on 429 for Retry-After without spending an attempt, and halves the shared deepl rate', async () => {
    const kysely = bed.deps().db.kysely
    await setRateLimit(kysely, 'deepl', { perSecond: 1_000 })
    try {
      misbehave = (_call, n, res) => {
        if (n > 1) return false
        res.writeHead(429, { 'retry-after': '1' }).end()
        return true
      }
      const job = await bed.enqueue({ type: 'translation.ui', payload: { sourceLocale: 'en', targetLocales: ['it'], strings: uiStrings('throttle', 5) } })
      const done = await bed.waitFinished(job.id)
      expect(done.state).toBe('completed')
      expect(done.attempt).toBe(1)
      expect(done.errors).toEqual([])
      expect(done.finishedAt!.getTime() - done.createdAt.getTime()).toBeGreaterThanOrEqual(900)
      expect(calls).toHaveLength(2)
      expectEachSentOnce(uiStrings('throttle', 5).map((s) => `IT|${s.text}`))
      expect((await getRateLimit(kysely, 'deepl'))!.currentPerSecond).toBeLessThan(1_000)
    } finally {
      await removeRateLimit(kysely, 'deepl')
    }
  })

  it('retries a 5xx with backoff, and the retry sends only what was not translated', async () => {
    misbehave = (_call, n, res) => {
      if (n !== 2) return false
      res.writeHead(503).end('Service unavailable')
      return true
    }
    const strings = uiStrings('flaky', 120)
    const job = await bed.enqueue({ type: 'translation.ui', payload: { sourceLocale: 'en', targetLocales: ['nl'], strings } })
    const done = await bed.waitFinished(job.id)
    expect(done.state).toBe('completed')
    expect(done.attempt).toBe(2)
    expect(done.errors.map((e) => e.code)).toEqual(['upstream_server_error'])
    expectEachSentOnce(strings.map((s) => `NL|${s.text}`))
    // Three batches answered once each, plus the one refused batch.
    expect(calls).toHaveLength(4)
  })

  it('retries a request that outlives DEEPL_TIMEOUT_MS', async () => {
    misbehave = async (_call, n, res) => {
      if (n > 1) return false
      // Answers after the client gave up: nothing it says counts as translated.
      await new Promise((r) => setTimeout(r, 2_500))
      res.destroy()
      return true
    }
    const job = await bed.enqueue({ type: 'translation.ui', payload: { sourceLocale: 'en', targetLocales: ['sv'], strings: uiStrings('slow', 2) } })
    const done = await bed.waitFinished(job.id)
    expect(done.state).toBe('completed')
    expect(done.attempt).toBe(2)
    expect(done.errors.map((e) => e.code)).toEqual(['upstream_timeout'])
    expect(await rows('store-1', 'sv')).toHaveLength(2)
  })

  it('treats a malformed body, or a wrong number of translations, as a retryable upstream error', async () => {
    misbehave = (call, _n, res) => {
      if (call.texts[0]!.startsWith('truncated')) res.writeHead(200, { 'content-type': 'application/json' }).end('{"translations":[')
      else json(res, 200, { translations: [{ text: 'only one' }] })
      return true
    }
    for (const tag of ['truncated', 'short']) {
      const job = await bed.enqueue({
        type: 'translation.ui',
        maxAttempts: 2,
        payload: { sourceLocale: 'en', targetLocales: ['da'], strings: uiStrings(tag, 2) },
      })
      const done = await bed.waitFinished(job.id)
      expect(done.state, tag).toBe('failed')
      expect(done.errors.map((e) => e.code), tag).toEqual(['upstream_malformed_response', 'upstream_malformed_response'])
    }
    expect(translated).toEqual([])
  })

  it('fails at once on 456 (quota exhausted), and a later job sends only what is missing', async () => {
    const strings = uiStrings('quota', 60)
    misbehave = (_call, n, res) => {
      if (n !== 2) return false
      json(res, 456, { message: 'Quota Exceeded' })
      return true
    }
    const job = await bed.enqueue({ type: 'translation.ui', payload: { sourceLocale: 'en', targetLocales: ['fi'], strings } })
    const done = await bed.waitFinished(job.id)
    expect(done.state).toBe('failed')
    expect(done.attempt).toBe(1)
    expect(done.lastError?.code).toBe('provider_quota_exhausted')

    // Quota raised: the refused batch's reservations were released, so this
    // runs at once and sends only the ten texts DeepL did not translate.
    misbehave = () => false
    const callsBefore = calls.length
    const again = await bed.enqueue({ type: 'translation.ui', payload: { sourceLocale: 'en', targetLocales: ['fi'], strings } })
    const redone = await bed.waitFinished(again.id)
    expect(redone.state).toBe('completed')
    expect(calls.slice(callsBefore).reduce((n, c) => n + c.texts.length, 0)).toBe(10)
    expect((redone.result as TranslateUiResult).textsTranslated).toBe(60)
    expectEachSentOnce(strings.map((s) => `FI|${s.text}`))
  })

  it('fails permanently, without calling DeepL, on a payload that breaks the schema or repeats a key', async () => {
    const bad: Array<[unknown, string]> = [
      [{ sourceLocale: 'en', targetLocales: [], strings: uiStrings('bad', 1) }, 'validation_failed'],
      [{ sourceLocale: 'en', targetLocales: ['de'], strings: uiStrings('bad', 1), storeId: 'store-x' }, 'validation_failed'],
      [{ sourceLocale: 'english', targetLocales: ['de'], strings: uiStrings('bad', 1) }, 'validation_failed'],
      [{ sourceLocale: 'en', targetLocales: ['de'], strings: [{ key: 'x'.repeat(201), text: 'bad' }] }, 'validation_failed'],
      [{ sourceLocale: 'en', targetLocales: ['de'], strings: [{ key: 'dup', text: 'bad 1' }, { key: 'dup', text: 'bad 2' }] }, 'duplicate_keys'],
    ]
    for (const [payload, code] of bad) {
      const job = await bed.enqueue({ type: 'translation.ui', payload })
      const done = await bed.waitFinished(job.id)
      expect(done.state).toBe('failed')
      expect(done.attempt).toBe(1)
      expect(done.lastError?.code).toBe(code)
    }
    expect(calls).toEqual([])
  })

  it('fails with not_configured, naming the variable, when DEEPL_API_URL is missing', async () => {
    const url = env.DEEPL_API_URL
    delete env.DEEPL_API_URL
    try {
      const job = await bed.enqueue({ type: 'translation.ui', payload: { sourceLocale: 'en', targetLocales: ['de'], strings: uiStrings('nourl', 1) } })
      const done = await bed.waitFinished(job.id)
      expect(done.state).toBe('failed')
      expect(done.attempt).toBe(1)
      expect(done.lastError?.code).toBe('not_configured')
      expect(done.lastError?.message).toContain('DEEPL_API_URL')
    } finally {
      env.DEEPL_API_URL = url
    }
    expect(calls).toEqual([])
  })
})

describe('TranslateUiPayload', () => {
  it('bounds locales, strings, keys and texts', () => {
    const check = Compile(TranslateUiPayload)
    const one = { key: 'k', text: 't' }
    const ok = { sourceLocale: 'en', targetLocales: ['de', 'zh-Hans'], strings: [one] }
    expect(check.Check(ok)).toBe(true)
    expect(check.Check({ ...ok, strings: Array.from({ length: 5_000 }, (_, i) => ({ key: `k${i}`, text: 't' })) })).toBe(true)
    expect(check.Check({ ...ok, strings: Array.from({ length: 5_001 }, (_, i) => ({ key: `k${i}`, text: 't' })) })).toBe(false)
    expect(check.Check({ ...ok, targetLocales: Array.from({ length: 31 }, (_, i) => `l${String.fromCharCode(97 + (i % 26))}-${i + 10}`) })).toBe(false)
    expect(check.Check({ ...ok, targetLocales: ['de', 'de'] })).toBe(false)
    expect(check.Check({ ...ok, strings: [{ key: 'k', text: 'x'.repeat(5_001) }] })).toBe(false)
    expect(check.Check({ ...ok, strings: [{ ...one, extra: 1 }] })).toBe(false)
    expect(check.Check({ ...ok, storeId: 'store-x' })).toBe(false)
  })

  it('normalises locale spelling for the stored rows', () => {
    expect(['DE', 'pt-br', 'ZH-HANS', 'es-419'].map(canonicalLocale)).toEqual(['de', 'pt-BR', 'zh-Hans', 'es-419'])
  })
})
