import { open, type FileHandle } from 'node:fs/promises'
import { getRateLimit, setRateLimit, type Executor } from '@backroom/queue-core'
import { Type, type Static } from 'typebox'
import { callUpstreamJson, type CallContext } from '../lib/http-client.ts'
import type { MarketplaceConfig } from './marketplace-config.ts'

/** Service name in upstream errors and logs. */
export const MARKETPLACE_SERVICE = 'marketplace'

/** The marketplace's answer to an accepted feed: `201 { "feedId": "…", "status": "accepted" }`. */
export const FeedAccepted = Type.Object({
  feedId: Type.String({ minLength: 1, maxLength: 200 }),
  status: Type.Literal('accepted'),
})
export type FeedAccepted = Static<typeof FeedAccepted>

/** A built feed file to upload. */
export interface FeedUpload {
  readonly marketplace: string
  readonly storeId: string
  /** Our export id (the job id): the feed's name on the marketplace. */
  readonly exportId: string
  readonly path: string
  readonly bytes: number
  readonly sha256: string
  readonly contentType: string
  readonly idempotencyKey: string
}

/**
 * The rate-limit key of a store's uploads to one marketplace: marketplaces
 * limit per merchant account, so each store gets its own bucket and one
 * busy store does not slow the others.
 */
export function feedRateKey(marketplace: string, storeId: string): string {
  return `marketplace:${marketplace}:${storeId}`
}

/**
 * Gives a rate-limit key its default rate when it has none. Keys are per
 * store, so operators cannot configure every one ahead of time; a key they
 * did configure (setRateLimit) is never touched, nor is the rate a 429 has
 * lowered. Two jobs seeding the same new key write the same values.
 */
export async function ensureRateLimit(db: Executor, key: string, perSecond: number): Promise<void> {
  if ((await getRateLimit(db, key)) === null) await setRateLimit(db, key, { perSecond })
}

/**
 * Uploads a feed file, streamed from disk (never held in memory), by the
 * feed upload protocol:
 *
 *     PUT {MARKETPLACE_API_URL}/v1/marketplaces/{marketplace}/stores/{storeId}/feeds/{exportId}
 *     Authorization: Bearer {MARKETPLACE_API_KEY}
 *     Content-Type: text/csv | application/xml
 *     Content-Length, Idempotency-Key, x-content-sha256: hex SHA-256 of the body
 *     → 201 { "feedId": "…", "status": "accepted" }
 *
 * PUT to a name of our own (the export id) makes the upload idempotent by
 * itself, and the Idempotency-Key lets the marketplace answer a repeat with
 * the first result. A token of `rateKey` is taken first; outcomes other than
 * 2xx become queue outcomes in sendUpstream (429 snoozes and halves the key's
 * rate, 5xx and timeouts retry, other 4xx fail the job).
 */
export async function uploadFeed(ctx: CallContext, config: MarketplaceConfig, feed: FeedUpload, rateKey: string): Promise<FeedAccepted> {
  const segments = ['v1', 'marketplaces', feed.marketplace, 'stores', feed.storeId, 'feeds', feed.exportId]
  const body = fileBody(feed.path)
  try {
    return await callUpstreamJson(
      ctx,
      {
        service: MARKETPLACE_SERVICE,
        method: 'PUT',
        url: `${config.apiUrl}/${segments.map(encodeURIComponent).join('/')}`,
        guard: config.urlGuard,
        headers: {
          authorization: `Bearer ${config.apiKey}`,
          'content-type': feed.contentType,
          'content-length': String(feed.bytes),
          'x-content-sha256': feed.sha256,
        },
        body: body.stream,
        timeoutMs: config.timeoutMs,
        idempotencyKey: feed.idempotencyKey,
        rateKey,
      },
      FeedAccepted,
    )
  } finally {
    await body.close()
  }
}

/** Bytes read per pull from the feed file. */
const CHUNK_BYTES = 64 * 1024

/**
 * A file as a byte stream that opens the file on the first read only: when
 * the rate limit snoozes the job before the request, nothing was opened.
 * `close()` releases the file whether or not the request read it all.
 */
function fileBody(filePath: string): { readonly stream: ReadableStream<Uint8Array>; close(): Promise<void> } {
  let handle: FileHandle | undefined
  let closed = false
  const close = async () => {
    if (closed) return
    closed = true
    await handle?.close()
  }
  const stream = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (closed) return controller.close()
        if (!handle) {
          const opened = await open(filePath, 'r')
          // Closed while opening (the request was abandoned): do not keep the file open.
          if (closed) {
            await opened.close()
            return controller.close()
          }
          handle = opened
        }
        const chunk = Buffer.allocUnsafe(CHUNK_BYTES)
        const { bytesRead } = await handle.read(chunk, 0, CHUNK_BYTES, null)
        if (bytesRead === 0) {
          await close()
          controller.close()
        } else controller.enqueue(chunk.subarray(0, bytesRead))
      },
      cancel: close,
    },
    // No read-ahead: pull runs only when fetch asks for bytes.
    { highWaterMark: 0 },
  )
  return { stream, close }
}
