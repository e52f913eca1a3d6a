import type { FastifyRequest } from 'fastify'
import { ApiError } from './api-error.ts'

/**
 * A preValidation hook refusing query integers that are not plain decimal
 * digits. The schema check converts query strings leniently ('1.5' and
 * 'true' would pass as 1, '' as 0): a bad filter must be a 400, not a
 * different query than the caller wrote.
 *
 * @example
 * app.get('/v1/jobs', { preValidation: strictQueryIntegers(['limit']), schema }, handler)
 */
export function strictQueryIntegers(names: ReadonlyArray<string>): (request: FastifyRequest) => Promise<void> {
  return async (request) => {
    const query = request.query as Record<string, unknown>
    for (const name of names) {
      const value = query[name]
      if (value !== undefined && (typeof value !== 'string' || !/^[0-9]{1,10}$/.test(value))) {
        throw new ApiError(400, 'invalid_request', `querystring/${name} must be a whole number`, { details: [{ in: 'querystring', path: `/${name}` }] })
      }
    }
  }
}
