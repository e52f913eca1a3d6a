import { badBatchBody, badDrainBody, badEnqueueBody, badKeyBody, UNICODE_ALPHABET, validEnqueueBody, type BadBody, type BodyPrincipal } from './bad-bodies.ts'
import type { Rng } from './create-rng.ts'
import { toJson } from './to-json.ts'

/** The API keys the fuzz app knows: a store key for store-a and store-b, a platform key, BACKROOM_ADMIN_KEY. */
export type KeyRole = 'platform' | 'admin' | 'storeA' | 'storeB'

/** What the generators may aim at: real keys and jobs in the test database. */
export interface FuzzWorld {
  /** Live tokens by role. */
  readonly keys: Readonly<Record<KeyRole, string>>
  /** A store key revoked before the run. */
  readonly revokedKey: string
  readonly cronSecret: string
  readonly batchLimit: number
  readonly bodyLimit: number
  /** A pending job of store-a, a completed one of store-a, a failed one of store-b. */
  readonly jobs: { readonly pendingA: string; readonly completedA: string; readonly failedB: string }
  /** A string put in payloads: it must never show up in the logs. */
  readonly marker: string
}

/** One request the API must refuse with a 4xx, without writing anything. */
export interface BadRequest {
  /** The generator and the defects that make the request invalid. */
  readonly label: string
  readonly method: string
  readonly url: string
  readonly headers: Readonly<Record<string, string>>
  /** Sent as is (raw text, so malformed JSON stays malformed). */
  readonly body?: string
  /** The statuses this request may get when the generator knows them; otherwise any 4xx. */
  readonly expect?: ReadonlyArray<number>
}

const JSON_TYPE = 'application/json'
const BAD_ROUTE_METHODS = ['PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'PROPFIND', 'MKCOL', 'COPY', 'MOVE', 'LOCK', 'UNLOCK', 'SEARCH', 'REPORT'] as const
/** Ids that name no job and no key: non-numbers, signs, exponents, paths, NUL, unicode and numbers above every id. */
const BAD_ID_TEMPLATES = ['-1', '0', '1e99', '1.0', '+1', ' 1', '0x1', 'NaN', 'Infinity', 'null', 'undefined', '..', '..%2F..%2Fhealthz', '%2e%2e', '%00', '1%00', '%20', '%E2%80%8B', 'abc', '🙂', '1;DROP TABLE jobs', "1'--", '[]', '{}'] as const

/** The token of a role, or one that is not a live key at all. */
function authHeader(world: FuzzWorld, role: KeyRole): Record<string, string> {
  return { authorization: `Bearer ${world.keys[role]}` }
}

/** A principal with a live key: which role, and the body rules it follows. */
function anyPrincipal(rng: Rng): { role: KeyRole; principal: BodyPrincipal } {
  const role = rng.pick<KeyRole>(['platform', 'admin', 'storeA', 'storeB'])
  return { role, principal: role === 'platform' || role === 'admin' ? 'platform' : 'store' }
}

/** An id numbered far above any job or key in the test database, and within bigint range. */
function absentNumericId(rng: Rng): string {
  const max = 9_223_372_036_854_775_807n
  const floor = 1_000_000_000n
  const span = max - floor
  // Two 53-bit draws cover the span well enough for a test.
  const draw = (BigInt(Math.floor(rng.next() * 2 ** 53)) << 11n) ^ BigInt(Math.floor(rng.next() * 2 ** 11))
  return String(floor + (draw % span))
}

function badId(rng: Rng): string {
  return rng.chance(0.4) ? absentNumericId(rng) : rng.pick(BAD_ID_TEMPLATES)
}

/**
 * An Authorization header no route under /v1 accepts: missing, another
 * scheme, a mangled, forged, revoked or truncated key, the cron secret.
 * (A numeric key id above the bigint range is a known bug: known-bugs.ts.)
 */
export function badAuthorization(rng: Rng, world: FuzzWorld): Record<string, string> {
  const key = world.keys[rng.pick<KeyRole>(['platform', 'admin', 'storeA', 'storeB'])]
  const flipped = key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A')
  const value = rng.pick<string | null>([
    null,
    '',
    'Bearer',
    'Bearer ',
    'Bearer    ',
    `Basic ${Buffer.from(`user:${key}`).toString('base64')}`,
    `Token ${key}`,
    key,
    `Bearer ${key}x`,
    `Bearer x${key}`,
    `Bearer ${flipped}`,
    `Bearer ${key.slice(0, -1)}`,
    `Bearer ${key} ${key}`,
    `Bearer ${key},${key}`,
    `Bearer ${world.revokedKey}`,
    `Bearer ${world.cronSecret}`,
    `Bearer brk_1_${rng.string(43, 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_')}`,
    `Bearer brk_${rng.int(1_000, 999_999_999)}_${rng.string(43, 'abcdefghijklmnopqrstuvwxyz0123456789')}`,
    `Bearer brk_0_${rng.string(43)}`,
    `Bearer brk__${rng.string(43)}`,
    `Bearer ${rng.string(rng.int(201, 5_000))}`,
    `Bearer ${rng.string(rng.int(1, 40), UNICODE_ALPHABET)}`,
    `Bearer\t${key}`,
  ])
  return value === null ? {} : { authorization: value }
}

function jsonRequest(label: string, method: string, url: string, headers: Record<string, string>, body: BadBody, expect?: ReadonlyArray<number>): BadRequest {
  return {
    label: `${label}: ${body.defects.join('; ')}`,
    method,
    url,
    headers: { ...headers, 'content-type': JSON_TYPE },
    body: toJson(body.value),
    expect: expect ?? [400, 413],
  }
}

/** Every route under /v1 that takes an API key, with a body it might take. */
function anyV1Route(rng: Rng, world: FuzzWorld): { method: string; url: string; body?: string } {
  const id = rng.pick([world.jobs.pendingA, world.jobs.completedA, world.jobs.failedB, badId(rng)])
  const enqueue = toJson(validEnqueueBody(rng, 'platform'))
  return rng.pick<() => { method: string; url: string; body?: string }>([
    () => ({ method: 'POST', url: '/v1/jobs', body: enqueue }),
    () => ({ method: 'POST', url: '/v1/jobs/batch', body: toJson({ jobs: [validEnqueueBody(rng, 'platform')] }) }),
    () => ({ method: 'GET', url: `/v1/jobs/${id}` }),
    () => ({ method: 'GET', url: '/v1/jobs?limit=5' }),
    () => ({ method: 'POST', url: `/v1/jobs/${id}/cancel` }),
    () => ({ method: 'POST', url: `/v1/jobs/${id}/retry` }),
    () => ({ method: 'GET', url: '/v1/stats' }),
    () => ({ method: 'POST', url: '/v1/keys', body: toJson(rng.chance(0.5) ? {} : { storeId: 'store-a' }) }),
    () => ({ method: 'DELETE', url: `/v1/keys/${rng.int(1, 6)}` }),
    () => ({ method: 'GET', url: `/v1/keys/${rng.int(1, 6)}/events?limit=5` }),
    () => ({ method: 'POST', url: '/v1/uploads?format=csv&storeId=store-a', body: 'sku,title,price,currency\n' }),
  ])()
}

/** Valid requests (even writes) sent with a key no route accepts: 401, nothing written. */
function unauthenticated(rng: Rng, world: FuzzWorld): BadRequest {
  const route = anyV1Route(rng, world)
  const headers = badAuthorization(rng, world)
  return {
    label: `bad key on ${route.method} ${route.url.split('?')[0]}: ${headers.authorization === undefined ? 'none' : JSON.stringify(headers.authorization.slice(0, 40))}`,
    method: route.method,
    url: route.url,
    headers: route.body === undefined ? headers : { ...headers, 'content-type': JSON_TYPE },
    body: route.body,
    // A dot segment as the id ('..', '%2e%2e') moves the request to another path, which may be no route at all: 404, still never served.
    expect: /\/(\.|%2e){2}(\/|$)/i.test(route.url) ? [401, 404] : [401],
  }
}

function enqueueRequest(rng: Rng, world: FuzzWorld): BadRequest {
  const { role, principal } = anyPrincipal(rng)
  return jsonRequest(`enqueue as ${role}`, 'POST', '/v1/jobs', authHeader(world, role), badEnqueueBody(rng, principal, world.marker))
}

function batchRequest(rng: Rng, world: FuzzWorld): BadRequest {
  const { role, principal } = anyPrincipal(rng)
  return jsonRequest(`batch as ${role}`, 'POST', '/v1/jobs/batch', authHeader(world, role), badBatchBody(rng, principal, world.batchLimit, world.marker))
}

/**
 * Reads and operations on a job the key may not touch: an id that names
 * nothing (404), another store's job (404, as if it did not exist), or a
 * job in a state the operation refuses (409). Never a job the key may
 * cancel or retry.
 */
function jobByIdRequest(rng: Rng, world: FuzzWorld): BadRequest {
  const { pendingA, completedA, failedB } = world.jobs
  type Case = readonly [KeyRole, string, string, ReadonlyArray<number>]
  const cases: ReadonlyArray<Case> = [
    [rng.pick<KeyRole>(['platform', 'admin', 'storeA', 'storeB']), rng.pick(['GET', 'HEAD']), badId(rng), [400, 404]],
    [rng.pick<KeyRole>(['platform', 'admin', 'storeA', 'storeB']), 'POST', `${badId(rng)}/${rng.pick(['cancel', 'retry'])}`, [400, 404]],
    ['storeB', rng.pick(['GET', 'HEAD']), rng.pick([pendingA, completedA]), [404]],
    ['storeA', rng.pick(['GET', 'HEAD']), failedB, [404]],
    ['storeB', 'POST', `${rng.pick([pendingA, completedA])}/${rng.pick(['cancel', 'retry'])}`, [404]],
    ['storeA', 'POST', `${failedB}/${rng.pick(['cancel', 'retry'])}`, [404]],
    [rng.pick<KeyRole>(['platform', 'admin', 'storeA']), 'POST', `${completedA}/${rng.pick(['cancel', 'retry'])}`, [409]],
    [rng.pick<KeyRole>(['platform', 'admin', 'storeA']), 'POST', `${pendingA}/retry`, [409]],
    [rng.pick<KeyRole>(['platform', 'admin', 'storeB']), 'POST', `${failedB}/cancel`, [409]],
  ]
  const [role, method, path, expect] = rng.pick(cases)
  const headers: Record<string, string> = authHeader(world, role)
  let body: string | undefined
  // Operations take no body: junk in one changes nothing (malformed JSON is a 400 of its own).
  if (method === 'POST' && rng.chance(0.3)) {
    headers['content-type'] = JSON_TYPE
    body = rng.chance(0.8) ? toJson({ state: 'pending', storeId: 'store-a', attempt: 0, note: world.marker }) : '{"state":'
  }
  const malformed = body === '{"state":'
  return { label: `${method} job ${path} as ${role}`, method, url: `/v1/jobs/${path}`, headers, body, expect: malformed ? [400, ...expect] : expect }
}

/** One bad filter (at least) among valid ones. */
function listRequest(rng: Rng, world: FuzzWorld): BadRequest {
  const role = rng.pick<KeyRole>(['platform', 'admin', 'storeA', 'storeB'])
  const params = new URLSearchParams()
  if (rng.chance(0.3)) params.append('state', rng.pick(['pending', 'running', 'completed', 'failed', 'cancelled']))
  // A store key naming another store gets an empty page before the cursor is checked (known-bugs.ts): platform keys only.
  if (rng.chance(0.3)) params.append('storeId', role === 'storeA' ? 'store-a' : role === 'storeB' ? 'store-b' : rng.pick(['store-a', 'store-b', 'a\u0000b']))
  if (rng.chance(0.3)) params.append('createdAfter', '2020-01-01T00:00:00Z')
  const cursorOf = (text: string) => Buffer.from(text, 'utf8').toString('base64url')
  const defect = rng.pick<readonly [string, string]>([
    ['state', rng.pick(['RUNNING', 'done', '', 'pending,failed', 'live', 'unknown'])],
    ['type', rng.pick(['', 'T'.repeat(rng.int(129, 300)), 'UPPER.case', 'a b', '..', 'system.canary\u0000'])],
    ['storeId', rng.pick(['', 's'.repeat(rng.int(65, 300))])],
    ['userId', rng.pick(['', 'u'.repeat(rng.int(65, 300))])],
    [
      rng.pick(['createdAfter', 'createdBefore']),
      rng.pick(['yesterday', '', '2024-13-01T00:00:00Z', '2024-02-30T00:00:00Z', '2024-01-01', '2016-12-31T23:59:60Z', '1700000000000', 'null']),
    ],
    // Not 1.5 or true: the query parser truncates them to integers (known-bugs.ts).
    ['limit', rng.pick(['0', '101', '-1', 'x', '', '0.5', '1e3', '9'.repeat(30), 'null', '%'])],
    [
      'cursor',
      rng.pick(['garbage!', '', 'c'.repeat(65), cursorOf('v1:0'), cursorOf('v2:5'), cursorOf('v1:-1'), cursorOf('v1:abc'), cursorOf('v1:'), cursorOf('v1:01'), '%00', 'djE6MQ==']),
    ],
    [rng.pick(['foo', 'page', 'offset', 'sort', 'order', 'store', 'storeId[]']), rng.pick(['1', '', 'x'])],
  ])
  params.append(defect[0], defect[1])
  // A filter given twice is a list where the schema wants one value.
  if (rng.chance(0.1)) params.append('limit', '5')
  return {
    label: `list as ${role}: ${defect[0]}=${JSON.stringify(defect[1].slice(0, 40))}`,
    method: rng.pick(['GET', 'GET', 'GET', 'HEAD']),
    url: `/v1/jobs?${params.toString()}`,
    headers: authHeader(world, role),
    expect: [400],
  }
}

function statsRequest(rng: Rng, world: FuzzWorld): BadRequest {
  const role = rng.pick<KeyRole>(['platform', 'admin', 'storeA', 'storeB'])
  const store = role === 'storeA' || role === 'storeB'
  const params = new URLSearchParams()
  if (rng.chance(0.3) && !store) params.append('storeId', rng.pick(['store-a', 'a\u0000b', 'é']))
  const defects: ReadonlyArray<readonly [string, string]> = [
    // Not 1.5, 0.5, true or '' for the thresholds: the query parser coerces them to integers (known-bugs.ts).
    ['storeLimit', rng.pick(['0', '1001', '100000', 'x', '', '0.5', '-1'])],
    [rng.pick(['backlog', 'oldestPendingMs', 'longRunningMs']), rng.pick(['-1', '2147483648', 'x', '1e99', 'null'])],
    [rng.pick(['type', 'state', 'foo', 'thresholds', 'backlog[]']), rng.pick(['1', 'x'])],
    ['storeId', rng.pick(['', 's'.repeat(rng.int(65, 200))])],
    ...(store ? [['storeId', rng.pick(['store-a', 'store-b', 'other'])] as const] : []),
  ]
  const defect = rng.pick(defects)
  params.append(defect[0], defect[1])
  return {
    label: `stats as ${role}: ${defect[0]}=${JSON.stringify(defect[1].slice(0, 40))}`,
    method: rng.pick(['GET', 'GET', 'HEAD']),
    url: `/v1/stats?${params.toString()}`,
    headers: authHeader(world, role),
    expect: [400],
  }
}

function keysRequest(rng: Rng, world: FuzzWorld): BadRequest {
  const role = rng.pick<KeyRole>(['platform', 'admin', 'storeA', 'storeB'])
  const store = role === 'storeA' || role === 'storeB'
  if (rng.chance(0.25)) return keyEventsRequest(rng, world, role, store)
  if (rng.chance(0.4)) {
    // Revoking: a store key may revoke nothing (403, even its own key); a platform key only names absent keys here.
    const id = store ? rng.pick([String(rng.int(1, 6)), badId(rng)]) : badId(rng)
    return { label: `revoke key ${id} as ${role}`, method: 'DELETE', url: `/v1/keys/${id}`, headers: authHeader(world, role), expect: store ? [400, 403, 404] : [400, 404] }
  }
  if (store) {
    const body = rng.chance(0.5) ? { value: rng.pick<unknown>([{}, { storeId: 'store-a' }, { label: 'mine' }]), defects: ['store key'] } : badKeyBody(rng, world.marker)
    return jsonRequest(`create key as ${role}`, 'POST', '/v1/keys', authHeader(world, role), body, [400, 403])
  }
  return jsonRequest(`create key as ${role}`, 'POST', '/v1/keys', authHeader(world, role), badKeyBody(rng, world.marker))
}

/** Query strings `GET /v1/keys/:id/events` refuses. */
const BAD_EVENTS_QUERIES = ['limit=0', 'limit=101', 'limit=1.5', 'limit=-1', 'limit=', 'limit=abc', 'limit=1e1', 'limit=1&limit=2', 'cursor=', 'cursor=not-a-cursor', `cursor=${'A'.repeat(65)}`, 'cursor=djE6LTE', 'since=1'] as const

/**
 * A key's audit read wrongly: a bad query (400; a store key may get 403
 * once the query passes) or, for a platform key, an id that names no key (404).
 */
function keyEventsRequest(rng: Rng, world: FuzzWorld, role: KeyRole, store: boolean): BadRequest {
  const absent = !store && rng.chance(0.5)
  const id = absent ? badId(rng) : String(rng.int(1, 6))
  const query = absent && rng.chance(0.5) ? '' : `?${rng.pick(BAD_EVENTS_QUERIES)}`
  return {
    label: `key events ${id}${query} as ${role}`,
    method: rng.pick(['GET', 'GET', 'HEAD']),
    url: `/v1/keys/${id}/events${query}`,
    headers: authHeader(world, role),
    expect: store ? [400, 403] : [400, 404],
  }
}

/** The drain endpoint: the wrong secret with any body (401), or the right one with a bad body (400/413). */
function drainRequest(rng: Rng, world: FuzzWorld): BadRequest {
  const url = '/v1/internal/process-pending'
  if (rng.chance(0.5)) {
    const headers = rng.pick<Record<string, string>>([
      {},
      { authorization: '' },
      { authorization: `Bearer ${world.cronSecret}x` },
      { authorization: `Bearer ${world.cronSecret.slice(1)}` },
      { authorization: world.cronSecret },
      { authorization: `Basic ${world.cronSecret}` },
      authHeader(world, 'platform'),
      authHeader(world, 'admin'),
      { authorization: `Bearer ${rng.string(rng.int(1, 300))}` },
    ])
    const body = rng.pick([undefined, '{}', '{"maxJobs":1}', '{"maxJobs":0}', 'not json'])
    return {
      label: `drain with a bad secret: ${JSON.stringify((headers.authorization ?? 'none').slice(0, 30))}`,
      method: 'POST',
      url,
      headers: body === undefined ? headers : { ...headers, 'content-type': JSON_TYPE },
      body,
      expect: [401],
    }
  }
  return jsonRequest('drain', 'POST', url, { authorization: `Bearer ${world.cronSecret}` }, badDrainBody(rng, world.marker))
}

/**
 * Body framing that is wrong whatever the content: malformed JSON, a
 * content type the API does not parse, a Content-Length that lies, a body
 * over the limit. The body behind it is often a valid enqueue.
 */
function framingRequest(rng: Rng, world: FuzzWorld): BadRequest {
  const { role, principal } = anyPrincipal(rng)
  const target = rng.pick(['/v1/jobs', '/v1/jobs/batch', '/v1/keys'])
  const valid = target === '/v1/jobs/batch' ? toJson({ jobs: [validEnqueueBody(rng, principal)] }) : toJson(validEnqueueBody(rng, principal))
  const auth = authHeader(world, role)
  const kind = rng.int(0, 4)
  if (kind === 0) {
    const text = rng.pick([
      valid.slice(0, rng.int(0, valid.length - 1)),
      `${valid}x`,
      `${valid}${valid}`,
      valid.replaceAll('"', "'"),
      `{"type":NaN}`,
      `// comment\n${valid}`,
      `{"a":1,}`,
      '\u0000',
      '"',
      rng.string(rng.int(1, 200), UNICODE_ALPHABET),
    ])
    return { label: `malformed JSON to ${target} as ${role}`, method: 'POST', url: target, headers: { ...auth, 'content-type': JSON_TYPE }, body: text, expect: [400] }
  }
  if (kind === 1) {
    const contentType = rng.pick([
      'text/plain',
      'application/xml',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/vnd.api+json',
      'application/json-patch+json',
      'text/json',
      'application/jsonx',
      'application/*',
      '*/*',
      'application/json, text/plain',
      'image/png',
    ])
    // text/plain is parsed as a string, which no route takes: 400 rather than 415.
    return { label: `content-type ${contentType} to ${target} as ${role}`, method: 'POST', url: target, headers: { ...auth, 'content-type': contentType }, body: valid, expect: [400, 415] }
  }
  if (kind === 2) {
    const length = valid.length + rng.pick([-valid.length, -1, 1, 1_000, -Math.floor(valid.length / 2)])
    return {
      label: `content-length ${length} for ${valid.length} bytes to ${target} as ${role}`,
      method: 'POST',
      url: target,
      headers: { ...auth, 'content-type': JSON_TYPE, 'content-length': String(length) },
      body: valid,
      expect: [400, 413],
    }
  }
  if (kind === 3) {
    return { label: `empty JSON body to ${target} as ${role}`, method: 'POST', url: target, headers: { ...auth, 'content-type': JSON_TYPE }, body: '', expect: [400] }
  }
  // Over the limit: a valid enqueue whose payload carries padding (the padding is itself invalid for a canary).
  const padded = toJson({ ...validEnqueueBody(rng, principal), payload: { pad: 'x'.repeat(world.bodyLimit + rng.int(1, 4_096)) } })
  const url = rng.pick([target, '/v1/internal/process-pending'])
  const headers = url === target ? auth : { authorization: `Bearer ${world.cronSecret}` }
  return { label: `body over the limit to ${url}`, method: 'POST', url, headers: { ...headers, 'content-type': JSON_TYPE }, body: padded, expect: [413] }
}

/** Known paths with methods they do not have, unknown paths, odd spellings. */
function routeRequest(rng: Rng, world: FuzzWorld): BadRequest {
  const role = rng.pick<KeyRole>(['platform', 'storeA'])
  const known = ['/v1/jobs', '/v1/jobs/batch', `/v1/jobs/${world.jobs.pendingA}`, `/v1/jobs/${world.jobs.pendingA}/cancel`, '/v1/stats', '/v1/keys', '/v1/keys/1', '/v1/keys/1/events', '/healthz', '/readyz', '/metrics', '/docs', '/docs/json', '/v1/internal/process-pending']
  if (rng.chance(0.5)) {
    const path = rng.pick(known)
    // HEAD answers wherever GET does: only methods no route has here.
    const method = rng.pick(BAD_ROUTE_METHODS.filter((m) => !(m === 'DELETE' && path === '/v1/keys/1')))
    return { label: `${method} ${path}`, method, url: path, headers: authHeader(world, role), expect: [404] }
  }
  const unknown = rng.pick([
    '/v2/jobs',
    '/v1',
    '/v1/',
    '/v1/job',
    '/v1/jobss',
    '/V1/JOBS',
    `/v1/jobs/${world.jobs.pendingA}/cancel/now`,
    `/v1/jobs/${world.jobs.pendingA}/delete`,
    '/v1/jobs/batch/1',
    '/v1/internal',
    '/v1/internal/drain',
    '/admin',
    '/.env',
    '/docs/json/x',
    '//v1/jobs',
    '/v1/jobs;x',
    `/${rng.string(rng.int(1, 80))}`,
    `/v1/${rng.string(rng.int(1, 80))}`,
  ])
  const method = rng.pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH'])
  // Unknown paths under /v1 meet the auth hook first: 401 without a key, 404 with one.
  return { label: `${method} ${unknown}`, method, url: unknown, headers: rng.chance(0.5) ? authHeader(world, role) : {}, expect: [401, 404] }
}

/**
 * A feed upload with one defect that is refused before anything is stored:
 * no or an unknown format, a store named by a store key or not named by a
 * platform key, a content type that is not a feed, a junk query field.
 */
function uploadRequest(rng: Rng, world: FuzzWorld): BadRequest {
  const { role, principal } = anyPrincipal(rng)
  const storeParam = principal === 'platform' ? '&storeId=store-a' : ''
  const defect = rng.pick(['no format', 'unknown format', 'store named wrongly', 'not a feed content type', 'junk query field'] as const)
  let url = `/v1/uploads?format=csv${storeParam}`
  let contentType = rng.pick(['text/csv', 'application/x-ndjson'])
  if (defect === 'no format') url = `/v1/uploads${storeParam ? `?${storeParam.slice(1)}` : ''}`
  if (defect === 'unknown format') url = `/v1/uploads?format=${rng.pick(['xls', 'CSV', '', 'csv,jsonl'])}${storeParam}`
  if (defect === 'store named wrongly') url = principal === 'platform' ? '/v1/uploads?format=csv' : '/v1/uploads?format=csv&storeId=store-b'
  if (defect === 'not a feed content type') contentType = rng.pick(['application/json', 'text/plain', 'multipart/form-data; boundary=x'])
  if (defect === 'junk query field') url = `${url}&${rng.pick(['state', 'attempt', 'uploadId'])}=1`
  return {
    label: `upload as ${role}: ${defect}`,
    method: 'POST',
    url,
    headers: { ...authHeader(world, role), 'content-type': contentType },
    body: `sku,title,price,currency\n${world.marker}-1,t,1.00,EUR\n`,
    expect: [400, 415],
  }
}

const GENERATORS: ReadonlyArray<readonly [number, (rng: Rng, world: FuzzWorld) => BadRequest]> = [
  [5, uploadRequest],
  [22, enqueueRequest],
  [12, batchRequest],
  [12, unauthenticated],
  [12, jobByIdRequest],
  [10, listRequest],
  [6, statsRequest],
  [7, keysRequest],
  [6, drainRequest],
  [8, framingRequest],
  [5, routeRequest],
]
const TOTAL_WEIGHT = GENERATORS.reduce((sum, [w]) => sum + w, 0)

/**
 * One request the API must refuse (4xx) without writing anything, drawn
 * from every route and verb: fuzzed bodies, keys, ids, query strings,
 * content types and framing. Deterministic for a given `rng` state.
 *
 * @example
 * const rng = createRng(seed)
 * const request = generateBadRequest(rng, world)
 * const res = await app.inject({ method: request.method, url: request.url, headers: request.headers, payload: request.body })
 */
export function generateBadRequest(rng: Rng, world: FuzzWorld): BadRequest {
  let roll = rng.int(1, TOTAL_WEIGHT)
  for (const [weight, generate] of GENERATORS) {
    roll -= weight
    if (roll <= 0) return generate(rng, world)
  }
  throw new Error('unreachable: weights cover the roll')
}
