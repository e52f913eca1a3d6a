import { Type, type Static } from 'typebox'

/** Every error response: `{ "error": { "code", "message", "details"? } }`. */
export const ErrorBody = Type.Object(
  {
    error: Type.Object({
      /** Stable, lowercase snake_case; clients branch on this, never on the message. */
      code: Type.String(),
      message: Type.String(),
      details: Type.Optional(Type.Unknown()),
    }),
  },
)
export type ErrorBody = Static<typeof ErrorBody>

/**
 * Builds an error response body.
 *
 * @example
 * reply.code(503).send(errorBody('database_unavailable', 'the database is not reachable'))
 */
export function errorBody(code: string, message: string, details?: unknown): ErrorBody {
  return details === undefined ? { error: { code, message } } : { error: { code, message, details } }
}
