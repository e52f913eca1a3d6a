import { describe, expect, it } from 'vitest'
import { createUrlGuard } from '../lib/url-guard.ts'
import {
  DEEPL_MAX_BODY_BYTES,
  deeplSourceLang,
  deeplTargetLang,
  planBatches,
  readDeeplConfig,
  textHash,
  type SourceText,
} from './deepl-client.ts'

const langs = { sourceLang: 'EN', targetLang: 'DE' }
const texts = (n: number, make: (i: number) => string): SourceText[] =>
  Array.from({ length: n }, (_, i) => {
    const text = make(i)
    return { hash: textHash(text), text }
  })
/** The body translateBatch sends for a batch, as bytes. */
const bodyBytes = (batch: ReadonlyArray<SourceText>) =>
  Buffer.byteLength(JSON.stringify({ text: batch.map((t) => t.text), target_lang: 'DE', source_lang: 'EN' }))

describe('planBatches', () => {
  it('cuts at 50 texts and keeps the order', () => {
    const all = texts(120, (i) => `t${i}`)
    const batches = planBatches(all, langs)
    expect(batches.map((b) => b.length)).toEqual([50, 50, 20])
    expect(batches.flat()).toEqual(all)
  })

  it('cuts at 128 KiB of JSON body, counting escapes and multi-byte characters exactly', () => {
    // '"' becomes \" in JSON (2 bytes), 'ü' is 2 bytes of UTF-8: 10,002 bytes a text.
    const all = texts(40, (i) => `${i}`.padEnd(2_500, 'ü').padEnd(5_000, '"'))
    const batches = planBatches(all, langs)
    for (const b of batches) expect(bodyBytes(b)).toBeLessThanOrEqual(DEEPL_MAX_BODY_BYTES)
    // Full: one more text of the next batch would not have fitted.
    for (let i = 0; i < batches.length - 1; i++) {
      expect(bodyBytes([...batches[i]!, batches[i + 1]![0]!])).toBeGreaterThan(DEEPL_MAX_BODY_BYTES)
    }
    expect(batches.flat()).toEqual(all)
  })

  it('honours smaller limits and returns nothing for nothing', () => {
    expect(planBatches(texts(5, (i) => `x${i}`), langs, { maxTexts: 2 }).map((b) => b.length)).toEqual([2, 2, 1])
    expect(planBatches([], langs)).toEqual([])
  })
})

describe('readDeeplConfig', () => {
  const urlGuard = createUrlGuard()

  it('builds the translate URL from the base URL and reads the key and timeout', () => {
    const config = readDeeplConfig({ DEEPL_API_URL: 'https://api-free.deepl.com/', DEEPL_API_KEY: 'k', DEEPL_TIMEOUT_MS: '5000' }, urlGuard)
    expect(config).toEqual({ translateUrl: 'https://api-free.deepl.com/v2/translate', apiKey: 'k', timeoutMs: 5_000, urlGuard })
    expect(readDeeplConfig({ DEEPL_API_URL: 'http://127.0.0.1:9', DEEPL_API_KEY: 'k' }, urlGuard).timeoutMs).toBe(30_000)
  })

  it('refuses a missing or unusable setting with not_configured, naming it', () => {
    const cases: Array<[Record<string, string>, string]> = [
      [{ DEEPL_API_KEY: 'k' }, 'DEEPL_API_URL'],
      [{ DEEPL_API_URL: 'not a url', DEEPL_API_KEY: 'k' }, 'DEEPL_API_URL'],
      [{ DEEPL_API_URL: 'http://x' }, 'DEEPL_API_KEY'],
      [{ DEEPL_API_URL: 'http://x', DEEPL_API_KEY: 'k', DEEPL_TIMEOUT_MS: 'soon' }, 'DEEPL_TIMEOUT_MS'],
    ]
    for (const [env, name] of cases) {
      expect(() => readDeeplConfig(env, urlGuard)).toThrow(expect.objectContaining({ code: 'not_configured', message: expect.stringContaining(name) }))
    }
  })
})

describe('DeepL language codes', () => {
  it('uses the bare language as source and the whole tag as target', () => {
    expect(deeplSourceLang('en-US')).toBe('EN')
    expect(deeplTargetLang('pt-br')).toBe('PT-BR')
    expect(deeplTargetLang('zh-Hans')).toBe('ZH-HANS')
  })
})
