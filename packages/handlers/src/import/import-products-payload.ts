import { Type } from 'typebox'

/** The formats a feed may be in: CSV with a header row, or JSON Lines. */
const FeedFormatSchema = Type.Union([Type.Literal('csv'), Type.Literal('jsonl')])

/**
 * Payload of `import.products`: a feed at an HTTP(S) URL with its format, or
 * a feed uploaded earlier (saveFeedUpload; the format is the upload's). The
 * store is the job's, never the payload's.
 *
 * @example
 * { feedUrl: 'https://feeds.example.com/acme/products.csv', format: 'csv' }
 * { uploadId: '42' }
 */
export const ImportProductsPayload = Type.Union([
  Type.Object(
    {
      feedUrl: Type.String({ minLength: 10, maxLength: 2048, pattern: '^https?://[^\\s]+$' }),
      format: FeedFormatSchema,
    },
    { additionalProperties: false },
  ),
  Type.Object({ uploadId: Type.String({ pattern: '^[1-9][0-9]{0,17}$' }) }, { additionalProperties: false }),
])

/**
 * Payload of `import.products.chunk`, enqueued by the parent only: one chunk
 * (a range of staged feed lines) of the import whose parent job is `importId`.
 */
export const ImportProductsChunkPayload = Type.Object(
  {
    importId: Type.String({ pattern: '^[1-9][0-9]{0,18}$' }),
    chunkNo: Type.Integer({ minimum: 0, maximum: 1_000_000 }),
  },
  { additionalProperties: false },
)
