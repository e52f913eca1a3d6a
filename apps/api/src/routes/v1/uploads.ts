import type { Db } from '@backroom/queue-core'
import { DEFAULT_MAX_UPLOAD_BYTES, FeedUploadQuotaError, FeedUploadTooLargeError, saveFeedUpload, shopView } from '@backroom/handlers/uploads'
import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import type { Redis } from 'ioredis'
import type { Readable } from 'node:stream'
import { Type } from 'typebox'
import { ApiError } from '../../api-error.ts'
import { storeForWrite } from '../../principal.ts'
import { ErrorBody } from '../../schemas/error-body.ts'
import { createStoreRateLimiter } from '../../store-rate-limiter.ts'
import { createUploadRetention } from '../../upload-retention.ts'

/** Options of {@link uploadsRoutes}. */
export interface UploadsRoutesOptions {
  readonly db: Db
  /** Largest feed file in bytes (413 beyond it). */
  readonly maxBytes?: number
  /** Bytes one store's uploads may hold together (API_UPLOAD_STORE_QUOTA_BYTES). */
  readonly quotaBytes: number
  /** Uploads one store may start per minute, also the burst (API_UPLOAD_RATE_PER_MINUTE). */
  readonly ratePerMinute: number
  /** Uploads older than this many hours are deleted unless a live import job names them (UPLOAD_RETENTION_HOURS). */
  readonly retentionHours: number
  /** Period of the background sweep of every store's expired uploads; null: none. */
  readonly sweepIntervalMs: number | null
  /** Shares upload rate limits between instances; null: per process. */
  readonly redis: Redis | null
}

/** Content types a feed file may be sent as; the format is named in the query. */
const FEED_CONTENT_TYPES = ['text/csv', 'application/x-ndjson', 'application/jsonl', 'application/octet-stream']

const UploadQuery = Type.Object(
  {
    format: Type.Union([Type.Literal('csv'), Type.Literal('jsonl')]),
    storeId: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'platform keys only: the store the file is for' })),
  },
  { additionalProperties: false },
)
const Uploaded = Type.Object({
  uploadId: Type.String({ description: "enqueue import.products with { uploadId } to import it (the store's own uploads only)" }),
  bytes: Type.Integer(),
})

/**
 * `POST /v1/uploads?format=csv|jsonl`: stores a product feed file for
 * `import.products` and answers `{ uploadId }`. The body is streamed into
 * 1 MiB parts (never held whole), so its limit is the feed limit, not the
 * JSON body limit; an upload cut short or over a limit leaves nothing.
 * Only the feed store is loaded, not handler code.
 *
 * Per store: at most `ratePerMinute` uploads a minute (429 `rate_limited`,
 * counted before the body is read, so refused and failed uploads count
 * too), at most `quotaBytes` stored (413 `upload_quota_exceeded`), and
 * uploads expire after `retentionHours` (see upload-retention.ts): the
 * store's expired ones are deleted before its quota is checked.
 */
export const uploadsRoutes: FastifyPluginAsync<UploadsRoutesOptions> = async (plain, options) => {
  const app = plain.withTypeProvider<TypeBoxTypeProvider>()
  app.setValidatorCompiler(TypeBoxValidatorCompiler)
  const shop = shopView(options.db)
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_UPLOAD_BYTES
  const limiter = createStoreRateLimiter({
    rate: options.ratePerMinute / 60,
    burst: options.ratePerMinute,
    redis: options.redis,
    keyPrefix: 'backroom:upload-rate:',
    log: app.log,
    refuse: (storeId, waitMs) =>
      new ApiError(429, 'rate_limited', `store ${storeId} is uploading more than ${options.ratePerMinute} files per minute`, {
        details: { storeId, perMinute: options.ratePerMinute },
        retryAfterMs: waitMs,
      }),
  })
  const retention = createUploadRetention({
    db: options.db,
    shop,
    retentionMs: options.retentionHours * 3_600_000,
    intervalMs: options.sweepIntervalMs,
    log: app.log,
  })
  app.addHook('onReady', async () => retention.start())
  app.addHook('onClose', async () => retention.stop())
  // The body stays a stream: the route reads it into the database part by part.
  app.addContentTypeParser(FEED_CONTENT_TYPES, (_request, payload, done) => done(null, payload))

  app.post(
    '/v1/uploads',
    {
      bodyLimit: maxBytes,
      schema: {
        summary: 'Upload a product feed file (CSV or JSON Lines) for import.products',
        description:
          'Per store: API_UPLOAD_RATE_PER_MINUTE uploads a minute (429 rate_limited), API_UPLOAD_STORE_QUOTA_BYTES stored ' +
          '(413 upload_quota_exceeded); uploads expire after UPLOAD_RETENTION_HOURS unless a live import job names them.',
        consumes: FEED_CONTENT_TYPES,
        querystring: UploadQuery,
        response: { 201: Uploaded, 400: ErrorBody, 401: ErrorBody, 413: ErrorBody, 415: ErrorBody, 429: ErrorBody },
      },
    },
    async (request, reply) => {
      const storeId = storeForWrite(request, request.query.storeId)
      const body = request.body as Readable | undefined
      if (!body || typeof (body as Readable).pipe !== 'function') {
        throw new ApiError(415, 'unsupported_media_type', `send the file as ${FEED_CONTENT_TYPES.join(', ')}`)
      }
      const announced = Number(request.headers['content-length'])
      try {
        await limiter.take(storeId, 1)
        // Expired uploads must not count against the quota checked next.
        await retention.runOnce(storeId)
        const saved = await saveFeedUpload(shop, {
          storeId,
          format: request.query.format,
          body,
          maxBytes,
          quotaBytes: options.quotaBytes,
          ...(Number.isSafeInteger(announced) && announced >= 0 ? { expectedBytes: announced } : {}),
        })
        request.log.info({ uploadId: saved.uploadId, bytes: saved.bytes, format: request.query.format }, 'feed uploaded')
        return reply.code(201).send(saved)
      } catch (err) {
        // Refused before or while reading: the rest of the body is not wanted, so this connection ends with the answer.
        reply.header('connection', 'close')
        if (err instanceof FeedUploadTooLargeError) throw new ApiError(413, 'payload_too_large', `the feed is larger than ${err.maxBytes} bytes`)
        if (err instanceof FeedUploadQuotaError) {
          throw new ApiError(413, 'upload_quota_exceeded', `the store's uploads would hold more than its quota of ${err.quotaBytes} bytes; delete or wait for older uploads to expire`, {
            details: { quotaBytes: err.quotaBytes, usedBytes: err.usedBytes },
          })
        }
        throw err
      }
    },
  )
}
