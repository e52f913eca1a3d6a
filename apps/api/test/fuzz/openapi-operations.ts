import type { JsonSchema } from './json-schema.ts'

/** One query or path parameter of an operation. */
export interface OpenApiParameter {
  readonly name: string
  readonly in: 'query' | 'path' | 'header'
  readonly required: boolean
  readonly schema: JsonSchema
}

/** One documented response: its JSON schema, when the document gives one. */
export interface OpenApiResponse {
  readonly schema: JsonSchema | null
}

/** One route and method of the document, in the shape the generators use. */
export interface OpenApiOperation {
  /** `POST /v1/jobs/{id}/cancel`: the label of the operation in reports. */
  readonly key: string
  readonly method: string
  /** The path template, `/v1/jobs/{id}`. */
  readonly path: string
  readonly parameters: ReadonlyArray<OpenApiParameter>
  /** The JSON request body's schema; null when the operation documents no JSON body. */
  readonly jsonBody: JsonSchema | null
  /** Documented responses by status code. */
  readonly responses: Readonly<Record<string, OpenApiResponse>>
  /** Whether the document says the operation needs no credentials (`security: []`). */
  readonly open: boolean
}

/** The parts of an OpenAPI 3 document this reads. */
export interface OpenApiDocument {
  readonly paths: Readonly<Record<string, Readonly<Record<string, RawOperation>>>>
}

interface RawOperation {
  readonly parameters?: ReadonlyArray<{ name: string; in: string; required?: boolean; schema?: JsonSchema }>
  readonly requestBody?: { content?: Readonly<Record<string, { schema?: JsonSchema }>> }
  readonly responses?: Readonly<Record<string, { content?: Readonly<Record<string, { schema?: JsonSchema }>> }>>
  readonly security?: ReadonlyArray<unknown>
}

const METHODS = new Set(['get', 'post', 'put', 'patch', 'delete'])

/**
 * Every operation of an OpenAPI 3 document (as GET /docs/json serves it),
 * sorted by key so the generators' choices depend on the seed alone.
 *
 * @example
 * const operations = readOperations((await app.inject({ url: '/docs/json' })).json())
 */
export function readOperations(doc: OpenApiDocument): ReadonlyArray<OpenApiOperation> {
  const out: OpenApiOperation[] = []
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, raw] of Object.entries(methods)) {
      if (!METHODS.has(method)) continue
      const responses: Record<string, OpenApiResponse> = {}
      for (const [status, response] of Object.entries(raw.responses ?? {})) {
        responses[status] = { schema: response.content?.['application/json']?.schema ?? null }
      }
      out.push({
        key: `${method.toUpperCase()} ${path}`,
        method: method.toUpperCase(),
        path,
        parameters: (raw.parameters ?? []).map((p) => ({
          name: p.name,
          in: p.in as OpenApiParameter['in'],
          required: p.required === true,
          schema: p.schema ?? {},
        })),
        jsonBody: raw.requestBody?.content?.['application/json']?.schema ?? null,
        responses,
        open: Array.isArray(raw.security) && raw.security.length === 0,
      })
    }
  }
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
}
