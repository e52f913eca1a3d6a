import type { Rng } from './create-rng.ts'
import { RawJson } from './to-json.ts'

/**
 * Request bodies that are wrong by construction. Every generator starts from
 * a body the route would accept and applies at least one defect that the
 * API must refuse before it writes anything (schema, store rules, payload
 * schema). Defects come in groups (one field each) and are drawn from
 * distinct groups, so a later defect can never repair an earlier one.
 */

/** A body and the defects that make it invalid (for the failure report). */
export interface BadBody {
  readonly value: unknown
  readonly defects: ReadonlyArray<string>
}

/** Who sends the body: a platform key must name the store, a store key must not. */
export type BodyPrincipal = 'platform' | 'store'

type Body = Record<string, unknown>

interface Defect {
  readonly group: string
  readonly name: string
  /** Only for this principal (store rules differ); both when absent. */
  readonly only?: BodyPrincipal
  apply(body: Body, rng: Rng): void
}

const MAX_DELAY_MS = 365 * 24 * 3_600_000
const PRIORITY_NAMES = ['urgent', 'high', 'normal', 'low'] as const

/** Characters a caller may well send: accents, CJK, emoji, RTL and combining marks. */
export const UNICODE_ALPHABET = 'aé中文🙂\u05d0\u0301ßØ\u200b'

/**
 * Values that are valid where they stand but awkward (unicode, U+0000,
 * lone surrogates). Used only in fields next to a defect that is refused
 * before the database: a U+0000 that reaches PostgreSQL alone is a known bug
 * (see known-bugs.ts), and here it checks that refusals happen first.
 */
function awkwardString(rng: Rng, maxLength: number): string | RawJson {
  const kind = rng.int(0, 3)
  if (kind === 0) return rng.string(rng.int(1, Math.min(maxLength, 20)), UNICODE_ALPHABET).slice(0, maxLength) || 'x'
  if (kind === 1) return new RawJson('"a\\u0000b"')
  if (kind === 2) return new RawJson('"\\ud800x"')
  return rng.string(rng.int(1, maxLength))
}

/** Any JSON value, for fields that expect something else entirely. */
export function junkValue(rng: Rng, marker: string): unknown {
  return rng.pick<() => unknown>([
    () => null,
    () => true,
    () => -1,
    () => 0,
    () => 1.5,
    () => new RawJson('1e400'),
    () => new RawJson('-1e400'),
    () => 9_007_199_254_740_993,
    () => '',
    () => marker,
    () => rng.string(rng.int(1, 300), UNICODE_ALPHABET),
    () => [],
    () => [1, 'a', null],
    () => ({}),
    () => ({ nested: { deeper: [marker] } }),
    () => deepNesting(rng.int(20, 400)),
  ])()
}

/** `[[[…]]]` or `{"a":{"a":…}}`: parsers and validators must not recurse themselves to death. */
export function deepNesting(depth: number): RawJson {
  return depth % 2 === 0 ? new RawJson('['.repeat(depth) + ']'.repeat(depth)) : new RawJson('{"a":'.repeat(depth) + '1' + '}'.repeat(depth))
}

const FORBIDDEN_FIELDS = [
  'state',
  'attempt',
  'lockedBy',
  'lockedAt',
  'leaseToken',
  'leaseExpiresAt',
  'id',
  'jobId',
  'createdAt',
  'startedAt',
  'finishedAt',
  'lastError',
  'progress',
  'vtime',
  'workerId',
  'cancelRequested',
  'coalesceKey',
  'store_id',
  'run_at',
  'STATE',
] as const

/** An RFC 3339 instant within the next day: what a valid runAt looks like. */
function futureInstant(rng: Rng): string {
  return new Date(Date.now() + rng.int(1_000, 86_400_000)).toISOString()
}

function validPayload(rng: Rng): Body {
  return rng.pick<Body>([{}, { sleepMs: rng.int(0, 1_000) }, { fail: 'retryable' }, { sleepMs: 0, fail: 'permanent' }])
}

/**
 * A `system.canary` enqueue body the API would accept from `principal`
 * (before any defect): optional fields are filled at random with valid values.
 */
export function validEnqueueBody(rng: Rng, principal: BodyPrincipal): Body {
  const body: Body = { type: 'system.canary', payload: validPayload(rng) }
  if (principal === 'platform') body.storeId = rng.pick(['store-a', 'store-b', 'store-c', rng.string(rng.int(1, 64))])
  if (rng.chance(0.4)) body.priority = rng.chance(0.5) ? rng.pick(PRIORITY_NAMES) : rng.int(1, 10)
  if (rng.chance(0.3)) {
    if (rng.chance(0.5)) body.runAt = futureInstant(rng)
    else body.delayMs = rng.int(0, MAX_DELAY_MS)
  }
  if (rng.chance(0.3)) body.dedupeKey = rng.string(rng.int(1, 255))
  if (rng.chance(0.3)) body.maxAttempts = rng.int(1, 1_000)
  if (rng.chance(0.3)) body.userId = rng.string(rng.int(1, 64))
  return body
}

const ENQUEUE_DEFECTS: ReadonlyArray<Defect> = [
  ...FORBIDDEN_FIELDS.map(
    (field): Defect => ({
      group: `extra:${field}`,
      name: `forbidden field ${field}`,
      apply: (b, rng) => {
        b[field] = rng.pick<unknown>(['running', 3, 'worker-1', null, futureInstant(rng), { x: 1 }])
      },
    }),
  ),
  { group: 'extra:random', name: 'unknown field', apply: (b, rng) => void (b[`x${rng.string(rng.int(1, 12))}`] = rng.int(0, 9)) },
  { group: 'storeId', name: 'storeId from a store key', only: 'store', apply: (b, rng) => void (b.storeId = rng.pick(['store-a', 'store-b', 'other'])) },
  { group: 'storeId', name: 'no storeId from a platform key', only: 'platform', apply: (b) => void delete b.storeId },
  {
    group: 'storeId',
    name: 'bad storeId',
    apply: (b, rng) => void (b.storeId = rng.pick<unknown>(['', 'x'.repeat(rng.int(65, 500)), 42, null, ['store-a'], { id: 'store-a' }, true])),
  },
  { group: 'type', name: 'no type', apply: (b) => void delete b.type },
  {
    group: 'type',
    name: 'bad type',
    apply: (b, rng) =>
      void (b.type = rng.pick<unknown>([
        '',
        'nope.never',
        'SYSTEM.CANARY',
        'system.canary ',
        ' system.canary',
        'system.canary.x',
        'system',
        'x'.repeat(rng.int(129, 400)),
        rng.string(rng.int(1, 40), UNICODE_ALPHABET),
        new RawJson('"system.canary\\u0000"'),
        7,
        null,
        ['system.canary'],
        { name: 'system.canary' },
      ])),
  },
  { group: 'payload', name: 'no payload', apply: (b) => void delete b.payload },
  {
    group: 'payload',
    name: 'bad payload',
    apply: (b, rng) =>
      void (b.payload = rng.pick<unknown>([
        null,
        'payload',
        42,
        [],
        [{}],
        { sleepMs: -1 },
        { sleepMs: 600_001 },
        { sleepMs: 1.5 },
        { sleepMs: '5' },
        { sleepMs: new RawJson('1e400') },
        { fail: 'sometimes' },
        { fail: null },
        { note: rng.string(rng.int(1, 50)) },
        { ['__proto__']: { polluted: true } },
        new RawJson('{"__proto__":{"polluted":true}}'),
        new RawJson('{"constructor":{"prototype":{"polluted":true}}}'),
        deepNesting(rng.int(50, 600)),
      ])),
  },
  {
    group: 'priority',
    name: 'bad priority',
    apply: (b, rng) =>
      void (b.priority = rng.pick<unknown>(['asap', 'URGENT', 'High', '', 0, 11, -1, 1.5, 1e308, new RawJson('1e400'), '5', null, true, [], {}])),
  },
  {
    group: 'schedule',
    name: 'bad runAt',
    apply: (b, rng) => {
      delete b.delayMs
      b.runAt = rng.pick<unknown>([
        'tomorrow',
        '',
        'now',
        '2024-13-01T00:00:00Z',
        '2024-02-30T00:00:00Z',
        '2024-01-01',
        '2024-01-01T25:00:00Z',
        '2024-01-01T00:00:00+25:00',
        '2016-12-31T23:59:60Z',
        '+275760-09-13T00:00:00Z',
        '2024-01-01 00:00:00',
        1_700_000_000_000,
        null,
        [],
      ])
    },
  },
  {
    group: 'schedule',
    name: 'bad delayMs',
    apply: (b, rng) => {
      delete b.runAt
      b.delayMs = rng.pick<unknown>([-1, MAX_DELAY_MS + 1, 1.5, '5', null, new RawJson('1e400'), Number.MAX_SAFE_INTEGER, [], {}])
    },
  },
  {
    group: 'schedule',
    name: 'runAt and delayMs',
    apply: (b, rng) => {
      b.runAt = futureInstant(rng)
      b.delayMs = rng.int(0, 60_000)
    },
  },
  {
    group: 'dedupeKey',
    name: 'bad dedupeKey',
    apply: (b, rng) => void (b.dedupeKey = rng.pick<unknown>(['', 'k'.repeat(rng.int(256, 2_000)), 42, null, [], { key: 'k' }])),
  },
  {
    group: 'maxAttempts',
    name: 'bad maxAttempts',
    apply: (b, rng) => void (b.maxAttempts = rng.pick<unknown>([0, 1_001, -1, 2.5, '3', null, 1e20, new RawJson('1e400'), true])),
  },
  {
    group: 'userId',
    name: 'bad userId',
    apply: (b, rng) => void (b.userId = rng.pick<unknown>(['', 'u'.repeat(rng.int(65, 500)), 7, null, {}, ['u']])),
  },
]

/** Whole bodies that are not an enqueue object at all. */
function notAnObject(rng: Rng, principal: BodyPrincipal, marker: string): unknown {
  return rng.pick<() => unknown>([
    () => [validEnqueueBody(rng, principal)],
    () => null,
    () => 42,
    () => 'system.canary',
    () => true,
    () => [],
    () => deepNesting(rng.int(100, 1_500)),
    () => ({}),
    () => ({ job: validEnqueueBody(rng, principal) }),
    () => ({ jobs: [validEnqueueBody(rng, principal)] }),
    () => ({ payload: { note: marker } }),
  ])()
}

/** Fills fields no defect touched with awkward but valid-shaped values (unicode, U+0000, lone surrogates). */
function addNoise(rng: Rng, body: Body, touched: ReadonlySet<string>): void {
  if (!touched.has('userId') && rng.chance(0.2)) body.userId = awkwardString(rng, 64)
  if (!touched.has('dedupeKey') && rng.chance(0.2)) body.dedupeKey = awkwardString(rng, 255)
}

/**
 * An enqueue body `principal` may not send: 1 to 3 defects from distinct
 * groups, or (one time in ten) no object at all.
 *
 * @example
 * const { value, defects } = badEnqueueBody(rng, 'store', 'MARKER') // defects: ['bad priority', 'forbidden field state']
 */
export function badEnqueueBody(rng: Rng, principal: BodyPrincipal, marker: string): BadBody {
  if (rng.chance(0.1)) return { value: notAnObject(rng, principal, marker), defects: ['not an enqueue object'] }
  const body = validEnqueueBody(rng, principal)
  if (rng.chance(0.3)) body.payload = { ...(body.payload as Body), note: marker }
  const candidates = ENQUEUE_DEFECTS.filter((d) => d.only === undefined || d.only === principal)
  const chosen: Defect[] = []
  const groups = new Set<string>()
  const wanted = rng.int(1, 3)
  while (chosen.length < wanted) {
    const defect = rng.pick(candidates)
    if (groups.has(defect.group)) continue
    groups.add(defect.group)
    chosen.push(defect)
  }
  for (const defect of chosen) defect.apply(body, rng)
  // A marker in a canary payload is itself a defect (unknown field): the body stays invalid either way.
  addNoise(rng, body, groups)
  return { value: body, defects: chosen.map((d) => d.name) }
}

/**
 * A batch body that must be refused whole: too many (valid) items, one or
 * more bad items among valid ones, or a body that is not `{ jobs: [...] }`.
 */
export function badBatchBody(rng: Rng, principal: BodyPrincipal, batchLimit: number, marker: string): BadBody {
  const kind = rng.int(0, 9)
  if (kind <= 1) {
    const items = Array.from({ length: batchLimit + rng.int(1, 5) }, () => validEnqueueBody(rng, principal))
    return { value: { jobs: items }, defects: ['over the batch limit'] }
  }
  if (kind <= 6) {
    const size = rng.int(1, batchLimit)
    const items: unknown[] = Array.from({ length: size }, () => validEnqueueBody(rng, principal))
    const bad = rng.sample(
      items.map((_, i) => i),
      rng.int(1, size),
    )
    const defects: string[] = []
    for (const index of bad) {
      const item = badEnqueueBody(rng, principal, marker)
      items[index] = item.value
      defects.push(`item ${index}: ${item.defects.join(', ')}`)
    }
    return { value: { jobs: items }, defects }
  }
  const valid = () => validEnqueueBody(rng, principal)
  return rng.pick<() => BadBody>([
    () => ({ value: { jobs: [] }, defects: ['empty batch'] }),
    () => ({ value: {}, defects: ['no jobs'] }),
    () => ({ value: { jobs: valid() }, defects: ['jobs not an array'] }),
    () => ({ value: { jobs: junkValue(rng, marker) }, defects: ['jobs junk'] }),
    () => ({ value: [valid()], defects: ['body is an array'] }),
    () => ({ value: { jobs: [valid()], [rng.pick(['storeId', 'state', 'type', 'atomic', 'limit'])]: 'x' }, defects: ['extra top-level field'] }),
    () => ({ value: valid(), defects: ['a single enqueue body'] }),
  ])()
}

/** A `POST /v1/keys` body a platform key may not send (a store key gets 403 for any body). */
export function badKeyBody(rng: Rng, marker: string): BadBody {
  return rng.pick<() => BadBody>([
    () => ({ value: { storeId: rng.pick<unknown>(['', 's'.repeat(rng.int(65, 300)), 42, null, ['store-a'], {}]) }, defects: ['bad storeId'] }),
    () => ({ value: { label: rng.pick<unknown>(['l'.repeat(rng.int(201, 1_000)), 42, null, [], {}]) }, defects: ['bad label'] }),
    () => ({
      value: { storeId: 'store-a', [rng.pick(['key', 'id', 'revoked', 'admin', 'platform', 'token', 'storeIds', 'secret'])]: junkValue(rng, marker) },
      defects: ['extra field'],
    }),
    () => ({ value: rng.pick<unknown>([[], [{}], 'store-a', 42, true, deepNesting(rng.int(10, 500))]), defects: ['not an object'] }),
  ])()
}

/** A `POST /v1/internal/process-pending` body refused even with the right secret. */
export function badDrainBody(rng: Rng, marker: string): BadBody {
  return rng.pick<() => BadBody>([
    () => ({ value: { maxJobs: rng.pick<unknown>([0, 1_001, -1, 1.5, 'x', null, new RawJson('1e400'), []]) }, defects: ['bad maxJobs'] }),
    () => ({ value: { budgetMs: rng.pick<unknown>([999, 300_001, 0, -5, 'x', 2.5, null, {}]) }, defects: ['bad budgetMs'] }),
    () => ({ value: { maxJobs: 1, [rng.pick(['types', 'storeId', 'workerId', 'concurrency'])]: junkValue(rng, marker) }, defects: ['extra field'] }),
    // Not `null`: the route reads a null or missing body as "every default", which is valid.
    () => ({ value: rng.pick<unknown>([[], [{}], 'go', 42, true, deepNesting(rng.int(10, 500))]), defects: ['not an object'] }),
  ])()
}
