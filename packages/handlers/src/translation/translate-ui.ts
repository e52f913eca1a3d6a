import { defineHandler, PermanentError, snooze, type Handler, type HandlerContext } from '@backroom/queue-core'
import type { Static } from 'typebox'
import type { HandlerDeps } from '../lib/deps.ts'
import { idempotencyKey } from '../lib/idempotency-key.ts'
import { urlGuardFor } from '../lib/url-guard.ts'
import {
  deeplSourceLang,
  deeplTargetLang,
  planBatches,
  readDeeplConfig,
  textHash,
  translateBatch,
  type DeeplConfig,
  type SourceText,
} from './deepl-client.ts'
import { TranslateUiPayload } from './translate-ui-payload.ts'
import {
  lookupTranslations,
  releaseReservations,
  reserveTexts,
  saveTranslations,
  upsertUiTranslations,
  type LangPair,
  type TranslationDb,
  type TranslationTables,
} from './translation-tables.ts'

/**
 * How long a job waits before looking again for texts another job is
 * sending. That job needs about one DeepL round trip; a crashed one's
 * reservation expires after the request timeout plus RESERVATION_MARGIN_MS.
 */
export const WAIT_FOR_OTHER_JOB_MS = 1_000

/**
 * A reservation outlives the request it covers by this much, so a live
 * sender's reservation never expires mid-request (the request is aborted at
 * its timeout first) and no other job sends the same text meanwhile.
 */
export const RESERVATION_MARGIN_MS = 30_000

/**
 * What a run did, kept as the job's result, which the store reads. Every
 * figure follows from the payload and the store's own rows, never from the
 * shared translation memory: whether another store had a text translated
 * before is not this store's to learn. How many texts went to DeepL is in
 * the worker's logs only.
 */
export interface TranslateUiResult {
  readonly locales: number
  readonly strings: number
  /** Distinct source texts of the payload. */
  readonly uniqueTexts: number
  /**
   * Distinct texts translated, summed over locales of another language than
   * the source, whether they came from the memory or from DeepL.
   */
  readonly textsTranslated: number
  /** UI rows inserted or changed. */
  readonly rowsWritten: number
}

/** What reached DeepL in a run: for the logs, never for the store. */
interface ProviderCounts {
  textsSent: number
  requests: number
}

type Payload = Static<typeof TranslateUiPayload>

/**
 * `translation.ui`: translates a store's UI strings into target locales with
 * DeepL and upserts them into `shop.ui_translations`.
 *
 * Every distinct text goes to DeepL at most once per language pair, ever:
 * the shared translation memory answers what is known, and a text is
 * reserved in it before it is sent, so a retried job, a later job or a job
 * running at the same time does not send it again. Texts another job is
 * sending make this job snooze briefly and pick up the result.
 *
 * Env: DEEPL_API_URL, DEEPL_API_KEY, optional DEEPL_TIMEOUT_MS.
 */
export function createTranslateUi(deps: HandlerDeps): Handler {
  const db: TranslationDb = deps.shop.withTables<TranslationTables>()
  return defineHandler({
    type: 'translation.ui',
    payload: TranslateUiPayload,
    maxAttempts: 8,
    // 5,000 strings × 30 locales is 3,000 requests at worst; a run cut short
    // by the timeout loses nothing, its retry starts from the memory.
    timeoutMs: 20 * 60_000,
    async run(payload, ctx) {
      const config = readDeeplConfig(deps.env, urlGuardFor(deps))
      return translateUi(db, config, payload, ctx)
    },
  })
}

async function translateUi(db: TranslationDb, config: DeeplConfig, payload: Payload, ctx: HandlerContext<Payload>): Promise<TranslateUiResult> {
  const storeId = ctx.job.storeId
  const strings = payload.strings.map((s) => ({ key: s.key, text: s.text, hash: textHash(s.text) }))
  rejectDuplicateKeys(strings)
  const unique = new Map<string, SourceText>()
  for (const s of strings) unique.set(s.hash, { hash: s.hash, text: s.text })
  const texts = [...unique.values()].sort((a, b) => (a.hash < b.hash ? -1 : 1))
  const locales = [...new Set(payload.targetLocales.map(canonicalLocale))]
  const sourceLang = deeplSourceLang(payload.sourceLocale)
  ctx.log.info({ strings: strings.length, uniqueTexts: texts.length, locales: locales.length }, 'translating ui strings')

  const provider: ProviderCounts = { textsSent: 0, requests: 0 }
  const counts = { textsTranslated: 0, rowsWritten: 0 }
  const waiting: string[] = []
  for (const [index, locale] of locales.entries()) {
    ctx.signal.throwIfAborted()
    const pair: LangPair = { sourceLang, targetLang: deeplTargetLang(locale) }
    let translated: Map<string, string>
    const sameLanguage = deeplSourceLang(locale) === sourceLang
    if (sameLanguage) {
      // Same language (en → en-GB): DeepL has nothing to do; the text stands.
      translated = new Map(texts.map((t) => [t.hash, t.text]))
    } else {
      translated = await lookupTranslations(db, pair, texts.map((t) => t.hash))
      const missing = texts.filter((t) => !translated.has(t.hash))
      if (missing.length > 0) {
        await sendMissing(db, config, ctx, pair, missing, provider)
        // Ours are in now; so may be texts another job was sending.
        for (const [hash, text] of await lookupTranslations(db, pair, missing.map((t) => t.hash))) translated.set(hash, text)
      }
    }
    if (translated.size < texts.length) {
      waiting.push(locale)
      continue
    }
    counts.rowsWritten += await upsertUiTranslations(db, {
      storeId,
      locale,
      rows: strings.map((s) => ({ key: s.key, text: translated.get(s.hash)!, sourceHash: s.hash })),
    })
    if (!sameLanguage) counts.textsTranslated += texts.length
    // Per locale, not per DeepL request: how often progress moves must not
    // tell the store which texts the memory already had.
    await ctx.progress({ localesDone: index + 1 - waiting.length, locales: locales.length, ...counts })
  }
  if (waiting.length > 0) {
    // Another job holds some of these texts: come back for its results
    // rather than send them twice. The attempt is not spent.
    ctx.log.info({ waitingLocales: waiting.length, ...provider }, 'waiting for texts another job is translating')
    throw snooze(WAIT_FOR_OTHER_JOB_MS)
  }
  ctx.log.info({ locales: locales.length, ...counts, ...provider }, 'ui strings translated')
  return { locales: locales.length, strings: strings.length, uniqueTexts: texts.length, ...counts }
}

/**
 * Sends the texts missing from the memory, batch by batch: reserve, send
 * what was reserved, save. Texts held by another job are skipped here.
 */
async function sendMissing(
  db: TranslationDb,
  config: DeeplConfig,
  ctx: HandlerContext<Payload>,
  pair: LangPair,
  missing: ReadonlyArray<SourceText>,
  counts: ProviderCounts,
): Promise<void> {
  const reserver = ctx.job.id
  for (const planned of planBatches(missing, pair)) {
    ctx.signal.throwIfAborted()
    const held = await reserveTexts(db, { ...pair, texts: planned, reserver, ttlMs: config.timeoutMs + RESERVATION_MARGIN_MS })
    const batch = planned.filter((t) => held.has(t.hash))
    if (batch.length === 0) continue
    let results: string[]
    try {
      results = await translateBatch(ctx, config, {
        ...pair,
        texts: batch.map((t) => t.text),
        // Same batch on a retry, same key: stable across attempts.
        idempotencyKey: idempotencyKey(ctx.job, `deepl:${pair.targetLang}:${textHash(batch.map((t) => t.hash).join(',')).slice(0, 16)}`),
      })
    } catch (err) {
      // Whatever went wrong (429, 5xx, abort), other jobs need not wait for
      // these reservations to expire. If even that fails they expire anyway,
      // so the send's error is the one worth reporting.
      await releaseReservations(db, { ...pair, hashes: batch.map((t) => t.hash), reserver }).catch((releaseErr: unknown) =>
        ctx.log.warn({ err: releaseErr }, 'could not release translation reservations'),
      )
      throw err
    }
    await saveTranslations(db, { ...pair, results: batch.map((t, i) => ({ hash: t.hash, translated: results[i]! })) })
    counts.textsSent += batch.length
    counts.requests += 1
  }
}

/** Two strings with one key would make the result depend on their order: refuse. */
function rejectDuplicateKeys(strings: ReadonlyArray<{ readonly key: string }>): void {
  const seen = new Set<string>()
  const duplicates = new Set<string>()
  for (const s of strings) {
    if (seen.has(s.key)) duplicates.add(s.key)
    seen.add(s.key)
  }
  if (duplicates.size > 0) {
    throw new PermanentError('duplicate_keys', {
      message: `translation.ui: ${duplicates.size} key(s) appear more than once in strings`,
      details: { keys: [...duplicates].slice(0, 10) },
    })
  }
}

/**
 * One spelling per locale, so `DE` and `de` land on the same rows: language
 * lower case, region upper case, script title case (`pt-BR`, `zh-Hans`).
 */
export function canonicalLocale(locale: string): string {
  const [language, sub] = locale.split('-') as [string, string | undefined]
  if (sub === undefined) return language.toLowerCase()
  const subtag = sub.length === 4 ? sub[0]!.toUpperCase() + sub.slice(1).toLowerCase() : sub.toUpperCase()
  return `${language.toLowerCase()}-${subtag}`
}
