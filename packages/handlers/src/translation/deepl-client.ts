import { createHash } from 'node:crypto'
import { PermanentError } from '@backroom/queue-core'
import { Type } from 'typebox'
import { callUpstreamJson, type CallContext } from '../lib/http-client.ts'
import { UpstreamError } from '../lib/upstream-error.ts'
import { providerEnv } from '../lib/provider-env.ts'
import type { UrlGuard } from '../lib/url-guard.ts'

/** DeepL accepts at most this many texts in one request. */
export const DEEPL_MAX_TEXTS = 50
/** DeepL refuses request bodies larger than 128 KiB. */
export const DEEPL_MAX_BODY_BYTES = 128 * 1024
/** Per-request timeout when DEEPL_TIMEOUT_MS is not set. */
export const DEFAULT_DEEPL_TIMEOUT_MS = 30_000
/**
 * The rate-limit key every DeepL call takes a token of. DeepL throttles per
 * account (one API key), so it is shared by every store and worker: a 429
 * halves the rate for all of them (`setRateLimit(db, 'deepl', …)` sets it).
 */
export const DEEPL_RATE_KEY = 'deepl'

/** Where and how to reach DeepL, from the environment. */
export interface DeeplConfig {
  /** `{DEEPL_API_URL}/v2/translate` */
  readonly translateUrl: string
  readonly apiKey: string
  readonly timeoutMs: number
  /** The guard every DeepL request passes (`urlGuardFor(deps)`). */
  readonly urlGuard: UrlGuard
}

/**
 * Reads DEEPL_API_URL (base URL, e.g. `https://api-free.deepl.com`),
 * DEEPL_API_KEY and the optional DEEPL_TIMEOUT_MS (ms per request). A
 * missing or unusable value is a PermanentError `not_configured`: retrying
 * cannot fix the environment. Requests will pass `urlGuard`.
 */
export function readDeeplConfig(env: Readonly<Record<string, string | undefined>>, urlGuard: UrlGuard): DeeplConfig {
  const read = providerEnv(env, 'translation.ui')
  return {
    translateUrl: `${read.httpUrl('DEEPL_API_URL', 'the DeepL API base URL, e.g. https://api-free.deepl.com')}/v2/translate`,
    apiKey: read.required('DEEPL_API_KEY'),
    timeoutMs: read.ms('DEEPL_TIMEOUT_MS', DEFAULT_DEEPL_TIMEOUT_MS, 600_000),
    urlGuard,
  }
}

/** A DeepL source language: the bare language, upper case (`en-US` → `EN`); DeepL has no regional sources. */
export function deeplSourceLang(locale: string): string {
  return locale.split('-')[0]!.toUpperCase()
}

/** A DeepL target language: the whole tag, upper case (`pt-br` → `PT-BR`, `zh-Hans` → `ZH-HANS`). */
export function deeplTargetLang(locale: string): string {
  return locale.toUpperCase()
}

/** A text to send, with its memory hash. */
export interface SourceText {
  readonly hash: string
  readonly text: string
}

/** The memory key of a text: hex sha-256 of its UTF-8 bytes. */
export function textHash(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex')
}

/**
 * Splits texts into request-sized batches: at most DEEPL_MAX_TEXTS texts and
 * a JSON body of at most `maxBodyBytes`, measured exactly as it is sent
 * (escapes and UTF-8 included). Order is kept. A single text always fits:
 * the payload caps a text at 5,000 characters, at most 30 KB as JSON.
 *
 * @example
 * planBatches(texts, { sourceLang: 'EN', targetLang: 'DE' }) // [[…50], [… ≤ 50]]
 */
export function planBatches(
  texts: ReadonlyArray<SourceText>,
  langs: { readonly sourceLang: string; readonly targetLang: string },
  limits: { readonly maxTexts?: number; readonly maxBodyBytes?: number } = {},
): SourceText[][] {
  const maxTexts = limits.maxTexts ?? DEEPL_MAX_TEXTS
  const maxBytes = limits.maxBodyBytes ?? DEEPL_MAX_BODY_BYTES
  const overhead = Buffer.byteLength(JSON.stringify(requestBody([], langs)))
  const batches: SourceText[][] = []
  let current: SourceText[] = []
  let bytes = overhead
  for (const t of texts) {
    const textBytes = Buffer.byteLength(JSON.stringify(t.text))
    // After the first text, each one also costs the comma before it.
    if (current.length > 0 && (current.length >= maxTexts || bytes + 1 + textBytes > maxBytes)) {
      batches.push(current)
      current = []
      bytes = overhead
    }
    bytes += textBytes + (current.length > 0 ? 1 : 0)
    current.push(t)
  }
  if (current.length > 0) batches.push(current)
  return batches
}

/** DeepL's `/v2/translate` JSON body; also what planBatches measures. */
function requestBody(texts: ReadonlyArray<string>, langs: { readonly sourceLang: string; readonly targetLang: string }) {
  return { text: texts, target_lang: langs.targetLang, source_lang: langs.sourceLang }
}

const TranslateResponse = Type.Object({
  translations: Type.Array(
    Type.Object({
      detected_source_language: Type.Optional(Type.String()),
      text: Type.String(),
    }),
  ),
})

/**
 * Translates one batch: `POST {DEEPL_API_URL}/v2/translate` with
 * `Authorization: DeepL-Auth-Key …` and `{ text, target_lang, source_lang }`.
 * Returns the translations in the order of `texts`. Outcomes beyond the shared
 * client's (429 snooze, 5xx/timeout retried, 4xx permanent): 456, DeepL's
 * "quota exceeded", is a PermanentError `provider_quota_exhausted`; a reply
 * with a different number of translations is a malformed (retried) response.
 */
export async function translateBatch(
  ctx: CallContext,
  config: DeeplConfig,
  batch: { readonly texts: ReadonlyArray<string>; readonly sourceLang: string; readonly targetLang: string; readonly idempotencyKey: string },
): Promise<string[]> {
  let body
  try {
    body = await callUpstreamJson(
      ctx,
      {
        service: 'deepl',
        url: config.translateUrl,
        guard: config.urlGuard,
        method: 'POST',
        headers: { authorization: `DeepL-Auth-Key ${config.apiKey}` },
        body: requestBody(batch.texts, batch),
        timeoutMs: config.timeoutMs,
        idempotencyKey: batch.idempotencyKey,
        rateKey: DEEPL_RATE_KEY,
      },
      TranslateResponse,
    )
  } catch (err) {
    if (isQuotaExceeded(err)) {
      // The character quota is per billing period: no retry within the
      // job's backoff can succeed. Fail loudly so an operator raises the
      // quota; what was translated so far is kept in the memory, so retrying
      // the job then sends only what is still missing.
      throw new PermanentError('provider_quota_exhausted', {
        message: 'DeepL character quota exhausted (HTTP 456)',
        details: { service: 'deepl', status: 456 },
        cause: err,
      })
    }
    throw err
  }
  if (body.translations.length !== batch.texts.length) {
    throw new UpstreamError('deepl', 'malformed_response', {
      status: 200,
      message: `deepl: ${body.translations.length} translations for ${batch.texts.length} texts`,
    })
  }
  return body.translations.map((t) => t.text)
}

function isQuotaExceeded(err: unknown): boolean {
  return (
    err instanceof PermanentError &&
    err.code === 'upstream_rejected' &&
    (err.details as { status?: unknown } | undefined)?.status === 456
  )
}
