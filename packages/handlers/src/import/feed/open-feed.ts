import { PermanentError, type HandlerContext } from '@backroom/queue-core'
import type { Static } from 'typebox'
import type { HandlerDeps } from '../../lib/deps.ts'
import { sendUpstream } from '../../lib/http-client.ts'
import { UpstreamError } from '../../lib/upstream-error.ts'
import { urlGuardFor } from '../../lib/url-guard.ts'
import { DEFAULT_MAX_UPLOAD_BYTES, findFeedUpload, readFeedUpload } from './feed-uploads.ts'
import type { ImportProductsPayload } from '../import-products-payload.ts'
import type { FeedFormat } from '../import-tables.ts'

/**
 * Comma-separated origins feed URLs may point at; required for URL feeds.
 * `*` admits any public host a store names; the URL guard applies either
 * way (no loopback, private or metadata address without HANDLER_URL_ALLOWLIST).
 */
export const FEED_ALLOWED_ORIGINS_ENV = 'IMPORT_FEED_ALLOWED_ORIGINS'
/**
 * Optional bearer token sent with feed downloads from the origins listed by
 * name in IMPORT_FEED_ALLOWED_ORIGINS, never to a host admitted by `*`.
 */
export const FEED_AUTH_TOKEN_ENV = 'IMPORT_FEED_AUTH_TOKEN'

/** A URL feed is capped like an upload. */
export const MAX_FEED_DOWNLOAD_BYTES = DEFAULT_MAX_UPLOAD_BYTES

/** A feed located and checked, ready to be read (again, after a crash). */
export interface FeedSource {
  readonly format: FeedFormat
  /** The URL, or `upload:<id>`: recorded on the import, safe to log (no credentials). */
  readonly label: string
  /** Opens the feed from its first byte. */
  open(): Promise<AsyncIterable<Uint8Array>>
}

/** Time limits of a feed download. */
export interface FeedTimeouts {
  /** The whole download, headers to last byte. */
  readonly totalMs: number
  /** The longest wait for the next bytes of the body. */
  readonly idleMs: number
}

/**
 * Locates the payload's feed and checks it may be read, before anything is
 * written: a URL must be on IMPORT_FEED_ALLOWED_ORIGINS, an upload must be
 * the job's store's and complete. Each refusal is a PermanentError.
 *
 * Feed URLs come from stores, so the download passes the URL guard (an
 * open fetcher would reach into our own network), redirects are refused
 * (they would step around the origin list), and the body is capped at
 * MAX_FEED_DOWNLOAD_BYTES. A URL admitted only by `*` is the store's
 * choice of host: it gets no IMPORT_FEED_AUTH_TOKEN, and its failures
 * reach the job as bare `fetch_refused` / `fetch_failed`, so that job
 * errors cannot be used to probe hosts and ports.
 */
export async function locateFeed(
  deps: HandlerDeps,
  ctx: HandlerContext,
  payload: Static<typeof ImportProductsPayload>,
  timeouts: FeedTimeouts,
): Promise<FeedSource> {
  if ('uploadId' in payload) {
    const upload = await findFeedUpload(deps.shop, ctx.job.storeId, payload.uploadId)
    if (!upload) throw new PermanentError('upload_not_found', { message: `the store has no feed upload ${payload.uploadId}` })
    if (!upload.complete) throw new PermanentError('upload_incomplete', { message: `feed upload ${payload.uploadId} was never completed` })
    return { format: upload.format, label: `upload:${upload.uploadId}`, open: async () => readFeedUpload(deps.shop, upload) }
  }
  const { url, listed } = checkFeedUrl(deps.env, payload.feedUrl)
  // The operator vouches for a listed origin; under `*` the store picked the host.
  const token = listed ? deps.env[FEED_AUTH_TOKEN_ENV] : undefined
  const untrustedUrl = !listed
  return {
    format: payload.format,
    label: url.href,
    async open() {
      const res = await sendUpstream(ctx, {
        service: 'feed',
        url,
        guard: urlGuardFor(deps),
        untrustedUrl,
        method: 'GET',
        headers: {
          accept: payload.format === 'csv' ? 'text/csv, */*;q=0.5' : 'application/x-ndjson, application/jsonl, */*;q=0.5',
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
        timeoutMs: timeouts.totalMs,
        // The origin was checked against IMPORT_FEED_ALLOWED_ORIGINS: a redirect must not lead elsewhere.
        redirect: 'error',
        maxBytes: MAX_FEED_DOWNLOAD_BYTES,
      })
      if (!res.body) return (async function* () {})()
      return withIdleTimeout(res.body, ctx.signal, { idleMs: timeouts.idleMs, opaque: untrustedUrl })
    },
  }
}

/** The feed URL, and whether its origin is listed by name (rather than admitted by `*`). */
function checkFeedUrl(env: HandlerDeps['env'], feedUrl: string): { readonly url: URL; readonly listed: boolean } {
  const allowed = env[FEED_ALLOWED_ORIGINS_ENV]?.split(',').map((s) => s.trim()).filter(Boolean) ?? []
  if (allowed.length === 0) {
    throw new PermanentError('not_configured', {
      message: `feed URLs need ${FEED_ALLOWED_ORIGINS_ENV} (comma-separated origins feeds may be downloaded from, or *)`,
    })
  }
  let url: URL
  try {
    url = new URL(feedUrl)
  } catch (err) {
    throw new PermanentError('feed_url_not_allowed', { message: 'the feed URL does not parse', cause: err })
  }
  if (url.username || url.password) throw new PermanentError('feed_url_not_allowed', { message: 'feed URLs may not carry credentials' })
  const listed = allowed.includes(url.origin)
  if (!listed && !allowed.includes('*')) {
    throw new PermanentError('feed_url_not_allowed', { message: `feeds are not downloaded from ${url.origin}`, details: { origin: url.origin } })
  }
  return { url, listed }
}

/**
 * A response body as an async iterable that fails with a retryable
 * UpstreamError when no bytes come for `idleMs` (a stalled server) or the
 * connection breaks (generic `fetch_failed` when `opaque`). Time the
 * consumer spends between reads does not count. A body over the size limit
 * fails with its PermanentError.
 */
async function* withIdleTimeout(
  body: ReadableStream<Uint8Array>,
  signal: AbortSignal,
  options: { readonly idleMs: number; readonly opaque: boolean },
): AsyncGenerator<Uint8Array> {
  const { idleMs, opaque } = options
  const reader = body.getReader()
  try {
    for (;;) {
      let timer: NodeJS.Timeout | undefined
      const idle = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new UpstreamError('feed', 'timeout', { message: `feed: no data for ${idleMs} ms`, opaque })), idleMs)
      })
      let next: Awaited<ReturnType<typeof reader.read>>
      try {
        next = await Promise.race([reader.read(), idle])
      } catch (err) {
        if (err instanceof UpstreamError || err instanceof PermanentError) throw err
        if (signal.aborted) throw signal.reason ?? err
        const timedOut = (err as { name?: string }).name === 'TimeoutError'
        throw new UpstreamError('feed', timedOut ? 'timeout' : 'network', {
          message: `feed: download ${timedOut ? 'timed out' : 'broke off'}`,
          cause: err,
          opaque,
        })
      } finally {
        clearTimeout(timer)
      }
      if (next.done) return
      yield next.value
    }
  } finally {
    reader.cancel().catch(() => {})
  }
}
