import { parseRetryAfter, PermanentError, snooze, type HandlerContext } from '@backroom/queue-core'
import type { TSchema, Static } from 'typebox'
import { Compile } from 'typebox/compile'
import { FetchRefusedError } from './fetch-refused-error.ts'
import { guardedFetch } from './guarded-fetch.ts'
import { UpstreamError, type UpstreamFailure } from './upstream-error.ts'
import { URL_ALLOWLIST_ENV } from './url-allowlist.ts'
import type { UrlGuard } from './url-guard.ts'

/** Default per-request timeout when the caller gives none. */
export const DEFAULT_HTTP_TIMEOUT_MS = 30_000

/** When a 429 carries no (readable) Retry-After. */
export const DEFAULT_RETRY_AFTER_MS = 1_000

/** One HTTP call to an external service. */
export interface UpstreamRequest {
  /** Service name for errors and logs (`deepl`, `marketplace`…). */
  readonly service: string
  readonly url: string | URL
  /** The guard the URL and every redirect pass (`urlGuardFor(deps)`). */
  readonly guard: UrlGuard
  /**
   * The URL was named by a store or a plugin's manifest, not configured by
   * the operator. Its failures are then generic: `fetch_refused` (the guard
   * said no) or `fetch_failed` (anything else), with no status, body or
   * address in the message, so that job errors cannot be used to probe
   * hosts and ports. Default false.
   */
  readonly untrustedUrl?: boolean
  readonly method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'
  readonly headers?: Readonly<Record<string, string>>
  /**
   * A string, bytes or a byte stream (a large upload, never held in memory)
   * as is; anything else is sent as JSON.
   */
  readonly body?: unknown
  readonly timeoutMs?: number
  /** Sent as `Idempotency-Key` (see idempotencyKey()). */
  readonly idempotencyKey?: string
  /**
   * A rate-limit key shared by every worker: a token is taken before the call
   * (the job snoozes without one), and a 429 halves the key's rate.
   */
  readonly rateKey?: string
  /**
   * 'follow' (default): redirects of GET and HEAD are followed, each hop
   * checked by the guard, credentials dropped on a hop to another origin.
   * 'error': a redirect fails the job (`fetch_refused`), for URLs checked
   * against an origin allow-list that a redirect would step around.
   */
  readonly redirect?: 'follow' | 'error'
  /** The response body is cut off past this many bytes (default DEFAULT_MAX_RESPONSE_BYTES, 16 MiB). */
  readonly maxBytes?: number
}

/** The run-scoped parts of a handler context a call needs (the logger, when given, records refused URLs). */
export type CallContext = Pick<HandlerContext, 'signal' | 'rateLimits'> & Partial<Pick<HandlerContext, 'log'>>

/**
 * Sends one request and returns the response when it is 2xx. Everything else
 * becomes a queue outcome, so handlers hold no retry loops:
 * - a URL (or redirect) the guard refuses: PermanentError `fetch_refused`;
 * - 429: the job snoozes for Retry-After (no attempt spent) and, with a
 *   `rateKey`, the key's rate is cut for every worker;
 * - 5xx, 408, timeouts and connection errors: UpstreamError, retried with backoff;
 * - any other 4xx: PermanentError (the request itself is wrong; retrying cannot help).
 * The run's AbortSignal (cancel, lease lost, shutdown) aborts the call.
 * Every request goes through guardedFetch: one DNS lookup, the connection
 * pinned to the checked addresses, redirects checked hop by hop, the body
 * capped at `maxBytes`.
 */
export async function sendUpstream(ctx: CallContext, req: UpstreamRequest): Promise<Response> {
  if (req.rateKey) await ctx.rateLimits.take(req.rateKey)
  const timeout = AbortSignal.timeout(req.timeoutMs ?? DEFAULT_HTTP_TIMEOUT_MS)
  const headers: Record<string, string> = { ...req.headers }
  if (req.idempotencyKey) headers['idempotency-key'] = req.idempotencyKey
  let body: string | Uint8Array | ReadableStream<Uint8Array> | undefined
  if (typeof req.body === 'string' || req.body instanceof Uint8Array || req.body instanceof ReadableStream) body = req.body
  else if (req.body !== undefined) {
    body = JSON.stringify(req.body)
    headers['content-type'] ??= 'application/json'
  }
  const failed = (failure: UpstreamFailure, options: { status?: number; cause?: unknown } = {}) =>
    new UpstreamError(req.service, failure, { ...options, opaque: req.untrustedUrl })
  let res: Response
  try {
    if (!URL.canParse(String(req.url))) throw new FetchRefusedError('malformed_url')
    res = await guardedFetch(req.guard, new URL(req.url), {
      service: req.service,
      method: req.method ?? (body === undefined ? 'GET' : 'POST'),
      headers,
      body,
      signal: AbortSignal.any([ctx.signal, timeout]),
      redirect: req.redirect ?? 'follow',
      maxBytes: req.maxBytes,
    })
  } catch (err) {
    // The run was aborted (cancel, shutdown): let the executor see its own reason.
    if (ctx.signal.aborted) throw ctx.signal.reason ?? err
    if (err instanceof FetchRefusedError) throw refused(ctx, req, err)
    // A bad HANDLER_URL_ALLOWLIST, a body announced over the limit.
    if (err instanceof PermanentError) throw err
    if (timeout.aborted) throw failed('timeout', { cause: err })
    throw failed('network', { cause: err })
  }
  if (res.ok) return res
  // Free the connection: the body of a refusal is not needed beyond a short excerpt (none for untrusted URLs).
  const excerpt = req.untrustedUrl ? await discard(res) : await readExcerpt(res)
  if (res.status === 429) {
    const waitMs = parseRetryAfter(res.headers.get('retry-after')) ?? DEFAULT_RETRY_AFTER_MS
    if (req.rateKey) return ctx.rateLimits.backOff(req.rateKey, waitMs)
    throw snooze(Math.max(1, waitMs))
  }
  if (res.status >= 500 || res.status === 408) throw failed('server_error', { status: res.status })
  if (req.untrustedUrl) throw new PermanentError('fetch_failed', { message: `${req.service}: the request failed`, details: { service: req.service } })
  throw new PermanentError('upstream_rejected', {
    message: `${req.service} refused the request (HTTP ${res.status})`,
    details: { service: req.service, status: res.status, body: excerpt },
  })
}

/**
 * The job's error for a refused URL. The operator's own URLs get the reason
 * (and where exceptions are configured); a URL a store or plugin named gets
 * no more than "refused", so a store cannot map our network through it. The
 * reason is logged either way, without the URL (it is payload data).
 */
function refused(ctx: CallContext, req: UpstreamRequest, err: FetchRefusedError): PermanentError {
  ctx.log?.warn({ service: req.service, reason: err.reason, addressClass: err.addressClass, untrustedUrl: req.untrustedUrl === true }, 'fetch refused')
  const hint = err.reason === 'address' ? `; ${URL_ALLOWLIST_ENV} lists the allowed exceptions` : ''
  return new PermanentError('fetch_refused', {
    message: req.untrustedUrl ? `${req.service}: the URL was refused` : `${req.service}: ${err.message}${hint}`,
    details: { service: req.service, reason: err.reason },
    cause: err,
  })
}

/**
 * Reads a 2xx body as JSON and checks it against `schema`. A body that does
 * not parse or does not match is an UpstreamError (retried: providers do
 * send truncated or wrong bodies under load), never a crash deeper in.
 */
export async function readUpstreamJson<S extends TSchema>(service: string, res: Response, schema: S): Promise<Static<S>> {
  let value: unknown
  try {
    value = await res.json()
  } catch (err) {
    // A body over the size limit is the server's doing: asking again gets the same.
    if (err instanceof PermanentError) throw err
    throw new UpstreamError(service, 'malformed_response', { status: res.status, message: `${service}: response is not JSON`, cause: err })
  }
  const check = compiled(schema)
  if (!check.Check(value)) {
    const first = [...check.Errors(value)][0]
    throw new UpstreamError(service, 'malformed_response', {
      status: res.status,
      message: `${service}: unexpected response shape${first ? ` at ${first.instancePath || '/'}: ${first.message}` : ''}`,
    })
  }
  return value as Static<S>
}

/** sendUpstream, then readUpstreamJson. */
export async function callUpstreamJson<S extends TSchema>(ctx: CallContext, req: UpstreamRequest, schema: S): Promise<Static<S>> {
  const res = await sendUpstream(ctx, { ...req, headers: { accept: 'application/json', ...req.headers } })
  return readUpstreamJson(req.service, res, schema)
}

const checks = new WeakMap<TSchema, ReturnType<typeof Compile>>()
function compiled(schema: TSchema): ReturnType<typeof Compile> {
  let check = checks.get(schema)
  if (!check) {
    check = Compile(schema)
    checks.set(schema, check)
  }
  return check
}

/** Drops a body unread (frees the connection); the empty excerpt. */
async function discard(res: Response): Promise<string> {
  await res.body?.cancel().catch(() => {})
  return ''
}

/** At most 300 characters of an error body, for the job's error record. */
async function readExcerpt(res: Response): Promise<string> {
  try {
    const text = await res.text()
    return text.length > 300 ? `${text.slice(0, 300)}…` : text
  } catch {
    return ''
  }
}
