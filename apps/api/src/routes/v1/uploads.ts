import type { Db } from '@backroom/queue-core'
import { DEFAULT_MAX_UPLOAD_BYTES, FeedUploadTooLargeError, saveFeedUpload, shopView } from '@backroom/handlers/uploads'
import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import type { Readable } from 'node:stream'
import { Type } from 'typebox'
import { ApiError } from '../../api-error.ts'
import { storeForWrite } from '../../principal.ts'
import { ErrorBody } from '../../schemas/error-body.ts'

/** Options of {@link uploadsRoutes}. */
export interface UploadsRoutesOptions {
  readonly db: Db
  /** Largest feed file in bytes (413 beyond it). */
  readonly maxBytes?: number
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
 * JSON body limit; an upload cut short or over the limit leaves nothing.
 * Only the feed store is loaded, not handler code.
 */
export const uploadsRoutes: FastifyPluginAsync<UploadsRoutesOptions> = async (plain, options) => {
  const app = plain.withTypeProvider<TypeBoxTypeProvider>()
  app.setValidatorCompiler(TypeBoxValidatorCompiler)
  const shop = shopView(options.db)
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_UPLOAD_BYTES
  // The body stays a stream: the route reads it into the database part by part.
  app.addContentTypeParser(FEED_CONTENT_TYPES, (_request, payload, done) => done(null, payload))

  app.post(
    '/v1/uploads',
    {
      bodyLimit: maxBytes,
      schema: {
        summary: 'Upload a product feed file (CSV or JSON Lines) for import.products',
        consumes: FEED_CONTENT_TYPES,
        querystring: UploadQuery,
        response: { 201: Uploaded, 400: ErrorBody, 401: ErrorBody, 413: ErrorBody, 415: ErrorBody },
      },
    },
    async (request, reply) => {
      const storeId = storeForWrite(request, request.query.storeId)
      const body = request.body as Readable | undefined
      if (!body || typeof (body as Readable).pipe !== 'function') {
        throw new ApiError(415, 'unsupported_media_type', `send the file as ${FEED_CONTENT_TYPES.join(', ')}`)
      }
      try {
        const saved = await saveFeedUpload(shop, { storeId, format: request.query.format, body, maxBytes })
        request.log.info({ uploadId: saved.uploadId, bytes: saved.bytes, format: request.query.format }, 'feed uploaded')
        return reply.code(201).send(saved)
      } catch (err) {
        if (err instanceof FeedUploadTooLargeError) {
          // Stop reading: the rest of the body is not wanted.
          reply.header('connection', 'close')
          throw new ApiError(413, 'payload_too_large', `the feed is larger than ${err.maxBytes} bytes`)
        }
        throw err
      }
    },
  )
}
