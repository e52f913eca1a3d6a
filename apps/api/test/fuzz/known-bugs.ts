import type { BadRequest, FuzzWorld } from './bad-requests.ts'

/**
 * Bad requests the API once answered wrongly (found by this fuzz test), kept
 * out of the random generators and replayed one by one: as regression tests
 * once fixed (`fixed: true`), as `it.fails` while still open (so a fix is
 * noticed: the `it.fails` then fails).
 */
export interface KnownBug {
  readonly title: string
  /** Fixed: the requests are replayed as a regression test (plain `it`), no longer `it.fails`. */
  readonly fixed?: boolean
  readonly requests: (world: FuzzWorld) => ReadonlyArray<BadRequest>
}

const JSON_TYPE = 'application/json'
/** One above the largest bigint; every id below is still 19 digits or fewer, so the id checks let it through. */
const ABOVE_BIGINT = '9223372036854775808'
const NINETEEN_NINES = '9999999999999999999'

const json = (label: string, url: string, key: string, body: string, method = 'POST'): BadRequest => ({
  label,
  method,
  url,
  headers: { authorization: `Bearer ${key}`, 'content-type': JSON_TYPE },
  body,
})
const get = (label: string, url: string, key: string, method = 'GET'): BadRequest => ({ label, method, url, headers: { authorization: `Bearer ${key}` } })

/** A translation.ui payload whose one string's text is `text` (a JSON string literal's inside). */
const translation = (text: string) => `{"sourceLocale":"en","targetLocales":["de"],"strings":[{"key":"k","text":"${text}"}]}`

export const KNOWN_BUGS: ReadonlyArray<KnownBug> = [
  {
    // PostgreSQL text and jsonb cannot hold U+0000; the schemas accept it, so the insert or the comparison fails: 500.
    fixed: true,
    title: 'U+0000 in a text field that reaches PostgreSQL answers 500 instead of 400',
    requests: ({ keys }) => [
      json('enqueue storeId', '/v1/jobs', keys.platform, '{"type":"system.canary","payload":{},"storeId":"a\\u0000b"}'),
      json('enqueue userId', '/v1/jobs', keys.storeA, '{"type":"system.canary","payload":{},"userId":"a\\u0000b"}'),
      json('enqueue dedupeKey', '/v1/jobs', keys.storeA, '{"type":"system.canary","payload":{},"dedupeKey":"a\\u0000b"}'),
      json('enqueue payload text', '/v1/jobs', keys.storeA, `{"type":"translation.ui","payload":${translation('a\\u0000b')}}`),
      json('batch item userId', '/v1/jobs/batch', keys.storeA, '{"jobs":[{"type":"system.canary","payload":{},"userId":"a\\u0000b"}]}'),
      json('key storeId', '/v1/keys', keys.platform, '{"storeId":"a\\u0000b"}'),
      json('key label', '/v1/keys', keys.platform, '{"label":"a\\u0000b"}'),
      get('list storeId', '/v1/jobs?storeId=a%00b', keys.platform),
      get('list userId', '/v1/jobs?userId=a%00b', keys.storeA),
      get('stats storeId', '/v1/stats?storeId=a%00b', keys.platform),
    ],
  },
  {
    // The id checks allow 19 digits (/^\d{1,19}$/, /^[1-9][0-9]{0,18}$/), but bigint ends at 9223372036854775807: the cast fails, 500.
    fixed: true,
    title: 'a 19-digit id above the bigint range answers 500 instead of 404/400/401 (job ids, key ids, cursors, tokens)',
    requests: ({ keys }) => [
      get('read job', `/v1/jobs/${ABOVE_BIGINT}`, keys.platform),
      get('read job (HEAD)', `/v1/jobs/${NINETEEN_NINES}`, keys.storeA, 'HEAD'),
      get('cancel job', `/v1/jobs/${NINETEEN_NINES}/cancel`, keys.storeA, 'POST'),
      get('retry job', `/v1/jobs/${ABOVE_BIGINT}/retry`, keys.platform, 'POST'),
      get('revoke key', `/v1/keys/${NINETEEN_NINES}`, keys.platform, 'DELETE'),
      get('list cursor', `/v1/jobs?cursor=${Buffer.from(`v1:${NINETEEN_NINES}`).toString('base64url')}`, keys.platform),
      // Unauthenticated: any caller can make any /v1 route answer 500.
      { label: 'token with a key id above bigint', method: 'GET', url: '/v1/stats', headers: { authorization: `Bearer brk_${NINETEEN_NINES}_${'a'.repeat(43)}` } },
    ],
  },
  {
    // The stored value is the lone surrogate replaced by U+FFFD, so enqueue's dedupe bookkeeping never finds the row it inserted
    // ("dedupe conflict did not settle") — after a single enqueue has committed it: a 500 AND a new job. jsonb refuses "\ud800" outright.
    fixed: true,
    title: 'a lone surrogate in dedupeKey or payload answers 500 (a single enqueue also writes the job)',
    requests: ({ keys }) => [
      json('enqueue dedupeKey', '/v1/jobs', keys.storeA, '{"type":"system.canary","payload":{},"dedupeKey":"\\udc00x"}'),
      json('batch dedupeKey', '/v1/jobs/batch', keys.storeA, '{"jobs":[{"type":"system.canary","payload":{},"dedupeKey":"\\udc00y"}]}'),
      json('enqueue payload text', '/v1/jobs', keys.storeA, `{"type":"translation.ui","payload":${translation('\\ud800')}}`),
    ],
  },
  {
    // Fastify's router rejects these before the error handler runs (FST_ERR_BAD_URL, FST_ERR_MAX_PARAM_LENGTH), with its own body
    // {"error":"Bad Request","code":"FST_…","message","statusCode"}; buildApp sets no `frameworkErrors` to map them.
    fixed: true,
    title: "a URL Fastify's router refuses (bad %-escape, path parameter over 100 characters) answers in Fastify's shape, not the contract's",
    requests: ({ keys }) => [
      get('bad escape in id', '/v1/jobs/%', keys.platform),
      get('bad escape in path', '/%ZZ', keys.platform),
      get('id of 101 characters', `/v1/jobs/${'1'.repeat(101)}`, keys.storeA),
      get('very long id', `/v1/jobs/${'x'.repeat(5_000)}/cancel`, keys.storeA, 'POST'),
      get('very long key id', `/v1/keys/${'9'.repeat(300)}`, keys.platform, 'DELETE'),
    ],
  },
  {
    // The query string's integers go through a lenient conversion: '1.5' and 'true' become 1, '0.5' and '' become 0.
    fixed: true,
    title: 'a query integer that is not an integer (1.5, 0.5, -0.5, true, empty) is truncated and answered 200 instead of 400',
    requests: ({ keys }) => [
      get('list limit=1.5', '/v1/jobs?limit=1.5', keys.platform),
      get('list limit=true', '/v1/jobs?limit=true', keys.storeA),
      get('stats storeLimit=1.5', '/v1/stats?storeLimit=1.5', keys.platform),
      get('stats backlog=0.5', '/v1/stats?backlog=0.5', keys.platform),
      get('stats oldestPendingMs=-0.5', '/v1/stats?oldestPendingMs=-0.5', keys.admin),
      get('stats longRunningMs=', '/v1/stats?longRunningMs=', keys.storeA),
    ].map((request) => ({ ...request, expect: [400] })),
  },
  {
    // listJobs returns the empty page for a store key naming another store before it decodes the cursor.
    fixed: true,
    title: "a store key listing another store with a malformed cursor gets 200 (an empty page) instead of 400",
    requests: ({ keys }) => [
      get('bad cursor', '/v1/jobs?storeId=store-b&cursor=garbage!', keys.storeA),
      get('cursor of another form', `/v1/jobs?storeId=other&cursor=${Buffer.from('v2:5').toString('base64url')}`, keys.storeA),
    ].map((request) => ({ ...request, expect: [400] })),
  },
]
