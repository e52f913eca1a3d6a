import { Type } from 'typebox'

/**
 * Payload of `export.marketplace`: `{ marketplace, format }`. The store is
 * never in the payload: the handler reads it from the job, so a caller can
 * only export the store it enqueued for. The marketplace name goes into the
 * upload URL and the rate-limit key, hence the narrow pattern.
 */
export const ExportMarketplacePayload = Type.Object(
  {
    marketplace: Type.String({ pattern: '^[a-z0-9-]{1,40}$', minLength: 1, maxLength: 40 }),
    format: Type.Union([Type.Literal('csv'), Type.Literal('xml')]),
  },
  { additionalProperties: false },
)
