import { badAuthorization, type FuzzWorld } from './bad-requests.ts'
import { UNICODE_ALPHABET } from './bad-bodies.ts'
import type { Rng } from './create-rng.ts'
import type { JsonSchema } from './json-schema.ts'
import { mutateValue } from './mutate-value.ts'
import type { OpenApiOperation, OpenApiParameter } from './openapi-operations.ts'
import { FROM_SCHEMA, schemaValue, type ValuePath } from './schema-value.ts'
import { RawJson, toJson } from './to-json.ts'

/** Who sends a request: a platform key, store A's key, nobody, or a key no route accepts. */
export const CALLERS = ['platform', 'storeA', 'none', 'badKey'] as const
export type Caller = (typeof CALLERS)[number]

/** What the generator may aim at: two stores' keys, jobs, uploads and cursors in the test database. */
export interface OpenApiFuzzWorld {
  /** Live and revoked keys, for {@link badAuthorization}'s forgeries too. */
  readonly keys: FuzzWorld
  readonly stores: { readonly a: string; readonly b: string }
  /** Job ids of each store (A's in several states; B's in every state). */
  readonly jobs: { readonly a: ReadonlyArray<string>; readonly b: ReadonlyArray<string> }
  /** Key ids: A's own, B's, and platform-revocable ones made for the fuzz (no caller's). */
  readonly keyIds: { readonly a: string; readonly b: ReadonlyArray<string>; readonly disposable: ReadonlyArray<string> }
  readonly uploads: { readonly a: string; readonly b: string }
  /** A real next-page cursor of each store's listing. */
  readonly cursors: { readonly a: string; readonly b: string }
  /** B's jobs carry these: a store-A response holding one has read B's data. */
  readonly bUserId: string
  /** The job payload schemas by type (`@backroom/handlers/schemas`). */
  readonly payloadSchemas: Readonly<Record<string, JsonSchema>>
  /** Put in payloads and bodies: it must never show up in the logs. */
  readonly marker: string
  readonly bodyLimit: number
}

/** One generated request. */
export interface FuzzRequest {
  /** The operation, the caller and the defects, for failure reports. */
  readonly label: string
  readonly operation: OpenApiOperation
  readonly caller: Caller
  /** Whether defects were put in on purpose (a valid-looking request otherwise). */
  readonly mutated: boolean
  readonly method: string
  readonly url: string
  readonly headers: Readonly<Record<string, string>>
  readonly body?: string
}

/** Ids that name nothing or are not ids: signs, exponents, traversal, escapes, unicode, numbers past bigint. */
const BAD_IDS = ['0', '-1', '1e3', '1.0', '+1', ' 1', '0x10', 'NaN', 'null', '..', '%2e%2e', '%2F', '%00', '1%00', '%ED%A0%80', '%F0%9F%99%82', 'abc', '1;DROP', "1'--", '9223372036854775807', '9223372036854775808', '99999999999999999999', '%', '%zz']
/** Query-string junk appended as is. */
const RAW_QUERY_JUNK = ['&&&', '&=', '&=x', '&limit', '&%zz=1', '&a%00b=1', '&storeId[]=x', '&__proto__[x]=1', '&constructor=1', '&%E2%80%AE=1', `&x=${'q'.repeat(9_000)}`]
const CONTENT_TYPE_DEFECTS = ['text/plain', 'application/json; charset=utf-16', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/jsonx', 'application/json, text/csv', '', 'text/csv']

/** A number far above every id in the test database and below bigint's end. */
function absentId(rng: Rng): string {
  return String(rng.int(1_000_000_000, 2 ** 53 - 1))
}

/** Stores a platform key writes for: never store B, whose rows must stay as they were. */
function platformStore(rng: Rng, world: OpenApiFuzzWorld): string {
  return rng.pick([world.stores.a, `store-p-${rng.int(1, 50)}`, `p-${rng.string(rng.int(1, 30))}`])
}

function authHeaders(rng: Rng, world: OpenApiFuzzWorld, caller: Caller): Record<string, string> {
  if (caller === 'platform') return { authorization: `Bearer ${world.keys.keys.platform}` }
  if (caller === 'storeA') return { authorization: `Bearer ${world.keys.keys.storeA}` }
  if (caller === 'none') return {}
  // The forgeries include `Bearer <cron secret>`, which is no API key but is what the drain endpoint takes.
  for (;;) {
    const headers = badAuthorization(rng, world.keys)
    if (headers.authorization !== `Bearer ${world.keys.cronSecret}`) return headers
  }
}

/** An id for `{id}`: ids the caller may touch and ids it may not (writes never touch store B's). */
function pathId(rng: Rng, world: OpenApiFuzzWorld, operation: OpenApiOperation, caller: Caller, mutated: boolean): string {
  if (mutated && rng.chance(0.6)) return rng.pick(BAD_IDS)
  const keysRoute = operation.path.startsWith('/v1/keys/')
  if (keysRoute) {
    // A platform key revokes only keys made for the fuzz: never a caller's own or store B's.
    if (caller === 'platform') return rng.chance(0.5) ? rng.pick(world.keyIds.disposable) : absentId(rng)
    return rng.pick([world.keyIds.a, ...world.keyIds.b, absentId(rng)])
  }
  const writes = operation.method !== 'GET'
  const ids = caller === 'platform' && writes ? [...world.jobs.a] : [...world.jobs.a, ...world.jobs.b]
  return rng.chance(0.85) ? rng.pick(ids) : absentId(rng)
}

/** Overrides for enqueue bodies: a job type with a payload drawn from that type's schema, and the store rules of the caller. */
function enqueueOverrides(rng: Rng, world: OpenApiFuzzWorld, caller: Caller, prefix: ValuePath): (path: ValuePath, schema: JsonSchema) => unknown {
  let type: string | null = null
  const types = Object.keys(world.payloadSchemas).sort()
  return (path, schema) => {
    const rel = path.slice(prefix.length)
    if (rel.length === 1 && rel[0] === 'type') {
      type = rng.chance(0.92) ? rng.pick(types) : (schemaValue(rng, schema) as string)
      return type
    }
    if (rel.length === 1 && rel[0] === 'storeId') {
      if (caller === 'storeA') return rng.chance(0.9) ? undefined : rng.pick([world.stores.a, world.stores.b])
      return rng.chance(0.95) ? platformStore(rng, world) : undefined
    }
    if (rel.length === 1 && rel[0] === 'payload') {
      const payloadSchema = type === null ? undefined : world.payloadSchemas[type]
      return payloadSchema === undefined ? FROM_SCHEMA : schemaValue(rng, payloadSchema, { override: payloadOverride(rng, world) })
    }
    return FROM_SCHEMA
  }
}

/** Payload fields naming stored things: either store's uploads (an import naming B's upload must not reach it). */
function payloadOverride(rng: Rng, world: OpenApiFuzzWorld): (path: ValuePath) => unknown {
  return (path) => (path[path.length - 1] === 'uploadId' && rng.chance(0.7) ? rng.pick([world.uploads.a, world.uploads.b]) : FROM_SCHEMA)
}

/** A valid-looking JSON body for the operation, from its schema and what the caller may name. */
function jsonBodyValue(rng: Rng, world: OpenApiFuzzWorld, operation: OpenApiOperation, caller: Caller, enqueueSchema: JsonSchema): unknown {
  const schema = operation.jsonBody ?? {}
  if (operation.key === 'POST /v1/jobs') return schemaValue(rng, schema, { override: enqueueOverrides(rng, world, caller, []) })
  if (operation.key === 'POST /v1/jobs/batch') {
    const size = rng.chance(0.1) ? rng.int(5, 60) : rng.int(1, 4)
    return { jobs: Array.from({ length: size }, (_, i) => schemaValue(rng, enqueueSchema, { override: enqueueOverrides(rng, world, caller, ['jobs', i]) }, ['jobs', i])) }
  }
  if (operation.key === 'POST /v1/keys') {
    return schemaValue(rng, schema, {
      override: (path) => (path.length === 1 && path[0] === 'storeId' ? (caller === 'platform' ? rng.pick([undefined, platformStore(rng, world)]) : rng.pick([undefined, world.stores.a, world.stores.b])) : FROM_SCHEMA),
    })
  }
  return schemaValue(rng, schema)
}

/** JSON text no serializer writes: cut short, doubled keys, a BOM, trailing junk, over the body limit. */
function rawBodyDefect(rng: Rng, text: string, world: OpenApiFuzzWorld): readonly [string, string] {
  return rng.pick<() => readonly [string, string]>([
    () => ['cut short', text.slice(0, rng.int(0, Math.max(0, text.length - 1)))],
    () => ['empty', ''],
    () => ['null', 'null'],
    () => ['byte order mark', `\ufeff${text}`],
    () => ['trailing junk', `${text}}`],
    () => ['duplicated key', text.startsWith('{"') ? `{"type":"system.canary",${text.slice(1)}` : `${text},`],
    () => ['single quotes', text.replaceAll('"', "'")],
    () => ['NaN literal', text.startsWith('{') ? `{"x":NaN,${text.slice(1)}` : 'NaN'],
    () => ['over the body limit', toJson({ pad: 'p'.repeat(world.bodyLimit + rng.int(1, 2_048)), marker: world.marker })],
  ])()
}

/** A feed upload body: CSV or JSON Lines a store might send, naming the marker. */
function feedBody(rng: Rng, world: OpenApiFuzzWorld, format: string): string {
  const rows = rng.int(0, 5)
  if (format === 'jsonl') return Array.from({ length: rows }, (_, i) => JSON.stringify({ sku: `${world.marker}-${i}`, title: 't', price: '1.00', currency: 'EUR' })).join('\n')
  return `sku,title,price,currency\n${Array.from({ length: rows }, (_, i) => `${world.marker}-${i},t${i},1.00,EUR\n`).join('')}`
}

/** A value as query-string text: strings as they are, raw JSON as written, anything else as JSON. */
function queryText(value: unknown): string {
  if (typeof value === 'string') return value
  if (value instanceof RawJson) return value.text
  return toJson(value)
}

/** Query parameters: from the schema (with real cursors and store ids) and, when mutated, defects of their own. */
function queryString(rng: Rng, world: OpenApiFuzzWorld, operation: OpenApiOperation, caller: Caller, mutated: boolean, defects: string[]): { params: URLSearchParams; raw: string } {
  const params = new URLSearchParams()
  const queryParams = operation.parameters.filter((p) => p.in === 'query')
  const writes = operation.method !== 'GET'
  const valueFor = (p: OpenApiParameter): string | undefined => {
    if (p.name === 'cursor' && rng.chance(0.7)) return rng.pick([world.cursors.a, world.cursors.b])
    if (p.name === 'storeId') {
      if (caller === 'storeA') return rng.chance(0.8) ? undefined : rng.pick([world.stores.a, world.stores.b])
      // Platform reads may name store B; platform writes never do.
      return writes ? platformStore(rng, world) : rng.pick([world.stores.a, world.stores.b, platformStore(rng, world)])
    }
    if (p.name === 'userId' && rng.chance(0.5)) return world.bUserId
    if (p.name === 'type' && rng.chance(0.7)) return rng.pick(Object.keys(world.payloadSchemas).sort())
    return queryText(schemaValue(rng, p.schema))
  }
  for (const p of queryParams) {
    // Uploads need the store named by a platform key: otherwise nearly every platform upload is a 400.
    const wanted = p.required || (p.name === 'storeId' && caller === 'platform' && writes) || rng.chance(0.4)
    if (!wanted) continue
    const value = valueFor(p)
    if (value !== undefined) params.append(p.name, value)
  }
  let raw = ''
  if (mutated) {
    for (let i = rng.int(1, 2); i > 0; i--) {
      const kind = rng.int(0, 4)
      if (kind <= 1 && queryParams.length > 0) {
        const p = rng.pick(queryParams)
        // Not the payload marker: URLs are logged (as they should be), payloads and feeds are not.
        const { value, defects: d } = mutateValue(rng, schemaValue(rng, p.schema), p.schema, 'q-junk')
        if (Array.isArray(value)) {
          params.delete(p.name)
          for (const v of value) params.append(p.name, queryText(v))
        } else params.set(p.name, queryText(value))
        defects.push(`query ${p.name}${d.join(',').replace(/^\//, ' ')}`)
      } else if (kind === 2 && queryParams.length > 0) {
        const p = rng.pick(queryParams)
        params.append(p.name, valueFor(p) ?? 'x')
        defects.push(`query ${p.name} twice`)
      } else if (kind === 3) {
        const name = rng.pick(['foo', 'state', 'attempt', 'sort', 'offset', rng.string(rng.int(1, 12), UNICODE_ALPHABET)])
        params.append(name, rng.pick(['1', '', 'q-junk']))
        defects.push(`unknown query ${name}`)
      } else {
        raw = rng.pick(RAW_QUERY_JUNK)
        defects.push(`raw query ${raw.slice(0, 20)}`)
      }
    }
  }
  return { params, raw }
}

/**
 * One request for a documented operation, schemathesis-style: a
 * valid-looking request built from the operation's schemas (and the job
 * payload schemas), or (about 45% of the time) one with defects in its
 * body, query, path id, content type or method. The caller is drawn from
 * {@link CALLERS}; writes never aim at store B, so its rows must end as
 * they began. Deterministic for a given `rng` state.
 *
 * @example
 * const request = generateOpenApiRequest(rng, readOperations(doc), world)
 * await app.inject({ method: request.method, url: request.url, headers: request.headers, payload: request.body })
 */
export function generateOpenApiRequest(rng: Rng, operations: ReadonlyArray<OpenApiOperation>, world: OpenApiFuzzWorld): FuzzRequest {
  const operation = rng.pick(operations)
  const caller = rng.pick(CALLERS)
  const mutated = rng.chance(0.45)
  const defects: string[] = []
  const enqueueSchema = operations.find((o) => o.key === 'POST /v1/jobs')?.jsonBody ?? {}

  let path = operation.path
  for (const p of operation.parameters.filter((p) => p.in === 'path')) {
    const id = pathId(rng, world, operation, caller, mutated)
    if (BAD_IDS.includes(id)) defects.push(`id ${id}`)
    path = path.replace(`{${p.name}}`, BAD_IDS.includes(id) ? id : encodeURIComponent(id))
  }
  const { params, raw } = queryString(rng, world, operation, caller, mutated, defects)
  const query = params.toString() + raw
  const url = query === '' ? path : `${path}?${query.replace(/^&/, '')}`

  const headers: Record<string, string> = authHeaders(rng, world, caller)
  let body: string | undefined
  if (operation.jsonBody !== null) {
    let value = jsonBodyValue(rng, world, operation, caller, enqueueSchema)
    if (mutated && rng.chance(0.7)) {
      const m = mutateValue(rng, value, operation.jsonBody, world.marker)
      value = m.value
      defects.push(...m.defects.map((d) => `body ${d}`))
    }
    body = toJson(value)
    headers['content-type'] = 'application/json'
    if (mutated && rng.chance(0.2)) {
      const [name, text] = rawBodyDefect(rng, body, world)
      body = text
      defects.push(`body ${name}`)
    }
  } else if (operation.key === 'POST /v1/uploads') {
    const format = params.get('format') ?? 'csv'
    body = feedBody(rng, world, format)
    headers['content-type'] = format === 'jsonl' ? 'application/x-ndjson' : 'text/csv'
    if (mutated && rng.chance(0.3)) {
      body = rng.pick(['', '\u0000\u0000\u0000', '{"sku":1}', 'sku\n' + '\ud800'.repeat(3), 'x'.repeat(rng.int(1, 70_000))])
      defects.push('upload body junk')
    }
  } else if (operation.method === 'POST' && rng.chance(mutated ? 0.4 : 0.1)) {
    // Operations without a body: a body sent anyway (JSON or junk) changes nothing.
    body = rng.pick([toJson({ state: 'pending', storeId: world.stores.b, note: world.marker }), '{', '[]', 'plain'])
    headers['content-type'] = rng.pick(['application/json', 'text/plain'])
    defects.push('unexpected body')
  }
  if (mutated && body !== undefined && rng.chance(0.15)) {
    headers['content-type'] = rng.pick(CONTENT_TYPE_DEFECTS)
    defects.push(`content-type ${JSON.stringify(headers['content-type'])}`)
  }
  if (rng.chance(0.05)) headers['x-forwarded-for'] = rng.pick(['127.0.0.1', '::1', '1.2.3.4, 5.6.7.8', '\u00ff'])
  if (mutated && rng.chance(0.05)) {
    headers['x-junk'] = 'j'.repeat(rng.int(1_000, 12_000))
    defects.push('long header')
  }

  let method = operation.method
  if (operation.method === 'GET' && rng.chance(0.1)) method = 'HEAD'
  if (mutated && rng.chance(0.04)) {
    method = rng.pick(['PUT', 'PATCH', 'DELETE', 'OPTIONS'].filter((m) => m !== operation.method))
    defects.push(`method ${method}`)
  }
  const label = `${operation.key} as ${caller}${defects.length > 0 ? `: ${defects.join('; ')}` : ''}`
  return { label, operation, caller, mutated, method, url, headers, ...(body === undefined ? {} : { body }) }
}
