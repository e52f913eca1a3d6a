import type { LightMyRequestResponse } from 'fastify'
import type { BadRequest } from './bad-requests.ts'

/** What a 4xx/5xx body must never carry: stack frames, file paths, SQL. */
export const LEAK = /\n\s+at |node_modules|\.ts:\d+|\bselect\b.+\bfrom\b|\binsert into\b|\bupdate \w+ set\b|duplicate key|violates|pg_|syntax error at/i

/**
 * Why a response to a bad request is wrong, or null when it is right: a
 * 4xx (one of `request.expect` when given), JSON in the contract's shape
 * `{ error: { code, message, details? } }` (HEAD: no body), nothing leaked,
 * and the headers a 401 or 429 owes the caller.
 */
export function responseProblem(request: BadRequest, res: LightMyRequestResponse): string | null {
  const status = res.statusCode
  if (status < 400 || status > 499) return `status ${status}, expected a 4xx`
  if (request.expect && !request.expect.includes(status)) return `status ${status}, expected ${request.expect.join(' or ')}`
  if (status === 401 && res.headers['www-authenticate'] !== 'Bearer') return '401 without WWW-Authenticate: Bearer'
  if (status === 429 && res.headers['retry-after'] === undefined) return '429 without Retry-After'
  if (request.method === 'HEAD') return res.body === '' ? null : 'HEAD answered with a body'
  if (!String(res.headers['content-type'] ?? '').startsWith('application/json')) return `content-type ${String(res.headers['content-type'])}`
  if (LEAK.test(res.body)) return 'body leaks a stack, a path or SQL'
  return errorShapeProblem(res.body)
}

/** Null when `text` is exactly `{ "error": { "code", "message", "details"? } }` with a snake_case code. */
export function errorShapeProblem(text: string): string | null {
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    return 'body is not JSON'
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'body is not an object'
  if (Object.keys(body).join() !== 'error') return `body keys ${Object.keys(body).join(', ')}, expected only error`
  const error = (body as { error: unknown }).error
  if (typeof error !== 'object' || error === null || Array.isArray(error)) return 'error is not an object'
  const extra = Object.keys(error).filter((k) => k !== 'code' && k !== 'message' && k !== 'details')
  if (extra.length > 0) return `error has extra keys ${extra.join(', ')}`
  const { code, message } = error as { code: unknown; message: unknown }
  if (typeof code !== 'string' || !/^[a-z][a-z0-9_]*$/.test(code)) return `error.code ${JSON.stringify(code)} is not a snake_case string`
  if (typeof message !== 'string' || message === '') return 'error.message is not a non-empty string'
  return null
}
