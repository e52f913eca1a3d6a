import { beforeAll, describe, expect, it } from 'vitest'
import { useHandlerTestBed } from '../testing/run-jobs.ts'
import { textHash } from './deepl-client.ts'
import { lookupTranslations, releaseReservations, reserveTexts, saveTranslations, type TranslationDb, type TranslationTables } from './translation-tables.ts'

const bed = useHandlerTestBed()
let db: TranslationDb
beforeAll(() => {
  db = bed.deps().shop.withTables<TranslationTables>()
})

const pair = { sourceLang: 'EN', targetLang: 'DE' }
const src = (text: string) => ({ hash: textHash(text), text })
const LONG = 60_000

describe('reserveTexts', () => {
  it('gives a text to one reserver while its reservation lives, and again to the same job', async () => {
    const t = src('reserve live')
    expect(await reserveTexts(db, { ...pair, texts: [t], reserver: 'job-1', ttlMs: LONG })).toEqual(new Set([t.hash]))
    expect(await reserveTexts(db, { ...pair, texts: [t], reserver: 'job-2', ttlMs: LONG })).toEqual(new Set())
    // A retried attempt of job-1 (say after a crash) takes its own reservation back.
    expect(await reserveTexts(db, { ...pair, texts: [t], reserver: 'job-1', ttlMs: LONG })).toEqual(new Set([t.hash]))
    // The same text toward another language is another entry.
    expect(await reserveTexts(db, { ...pair, targetLang: 'FR', texts: [t], reserver: 'job-2', ttlMs: LONG })).toEqual(new Set([t.hash]))
  })

  it('lets another job take over an expired reservation (its reserver crashed) or a released one', async () => {
    const crashed = src('reserve crashed')
    const released = src('reserve released')
    await reserveTexts(db, { ...pair, texts: [crashed], reserver: 'job-1', ttlMs: 0 })
    await reserveTexts(db, { ...pair, texts: [released], reserver: 'job-1', ttlMs: LONG })
    await releaseReservations(db, { ...pair, hashes: [released.hash], reserver: 'job-1' })
    expect(await reserveTexts(db, { ...pair, texts: [crashed, released], reserver: 'job-2', ttlMs: LONG })).toEqual(
      new Set([crashed.hash, released.hash]),
    )
  })

  it('never hands out a translated text; the first translation saved stays', async () => {
    const t = src('reserve translated')
    await reserveTexts(db, { ...pair, texts: [t], reserver: 'job-1', ttlMs: 0 })
    await reserveTexts(db, { ...pair, texts: [t], reserver: 'job-2', ttlMs: LONG })
    expect(await saveTranslations(db, { ...pair, results: [{ hash: t.hash, translated: 'zweite' }] })).toBe(1)
    // job-1's late answer for the same text changes nothing.
    expect(await saveTranslations(db, { ...pair, results: [{ hash: t.hash, translated: 'erste' }] })).toBe(0)
    expect(await reserveTexts(db, { ...pair, texts: [t], reserver: 'job-1', ttlMs: LONG })).toEqual(new Set())
    expect(await lookupTranslations(db, pair, [t.hash, textHash('unknown')])).toEqual(new Map([[t.hash, 'zweite']]))
  })
})
