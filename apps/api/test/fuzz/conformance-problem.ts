import type { LightMyRequestResponse } from 'fastify'
import { Compile } from 'typebox/compile'
import type { TSchema } from 'typebox'
import { withoutNullable, type JsonSchema } from './json-schema.ts'
import type { OpenApiOperation } from './openapi-operations.ts'
import { errorShapeProblem, LEAK } from './response-problem.ts'

type Checker = ReturnType<typeof Compile>
const checkers = new Map<JsonSchema, Checker>()

function checkerFor(schema: JsonSchema): Checker {
  let checker = checkers.get(schema)
  if (!checker) {
    // The document's schemas are plain JSON Schema once OpenAPI's `nullable` is rewritten; TypeBox compiles those as they are.
    checker = Compile(withoutNullable(schema) as TSchema)
    checkers.set(schema, checker)
  }
  return checker
}

/** Whether `body` has a stack, path or SQL fragment that is not just text the caller sent (an unknown type's name is echoed, say). */
function leaks(body: string, sent: string): boolean {
  for (const match of body.matchAll(new RegExp(LEAK.source, 'gi'))) if (!sent.includes(match[0])) return true
  return false
}

/**
 * Why a response breaks the API's promises whatever the request was, or
 * null: never a 5xx; a 4xx is JSON in the error shape with a snake_case
 * code and no stack, path or SQL, a 401 says `WWW-Authenticate: Bearer`, a
 * 429 gives Retry-After (a fragment the caller sent itself, echoed in a
 * message, is no leak); a 2xx JSON body matches the schema the document
 * gives for that operation and status. HEAD answers carry no body.
 *
 * @example
 * conformanceProblem(operation, { method: 'GET', url: '/v1/jobs' }, await app.inject({ url: '/v1/jobs' })) // null
 */
export function conformanceProblem(operation: OpenApiOperation, request: { readonly method: string; readonly url: string; readonly body?: string }, res: LightMyRequestResponse): string | null {
  const method = request.method
  const status = res.statusCode
  if (status >= 500) return `status ${status}`
  if (method === 'HEAD') return res.body === '' ? null : 'HEAD answered with a body'
  const json = String(res.headers['content-type'] ?? '').startsWith('application/json')
  if (status >= 400) {
    if (status === 401 && res.headers['www-authenticate'] !== 'Bearer') return '401 without WWW-Authenticate: Bearer'
    if (status === 429 && res.headers['retry-after'] === undefined) return '429 without Retry-After'
    if (!json) return `${status} with content-type ${String(res.headers['content-type'])}`
    if (leaks(res.body, `${request.url}\n${request.body ?? ''}`)) return `${status} body leaks a stack, a path or SQL`
    const shape = errorShapeProblem(res.body)
    return shape === null ? null : `${status}: ${shape}`
  }
  const schema = operation.responses[String(status)]?.schema
  if (status >= 200 && status < 300 && json && schema && res.body !== '') {
    const checker = checkerFor(schema)
    const body: unknown = JSON.parse(res.body)
    if (!checker.Check(body)) {
      const first = [...checker.Errors(body)][0]
      return `${status} body does not match the documented schema: ${first?.instancePath ?? ''} ${first?.message ?? ''}`
    }
  }
  return null
}
