import { parseRetryAfter, PermanentError, snooze, type HandlerContext } from '@backroom/queue-core'
import type { TSchema, Static } from 'typebox'
import { Compile } from 'typebox/compile'
import { UpstreamError } from './upstream-error.ts'

/** Default per-request timeout when the caller gives none. */
export const DEFAULT_HTTP_TIMEOUT_MS = 30_000

/** When a 429 carries no (readable) Retry-After. */
export const DEFAULT_RETRY_AFTER_MS = 1_000

/** One HTTP call to an external service. */
export interface UpstreamRequest {
  /** Service name for errors and logs (`deepl`, `marketplace`…). */
  readonly service: string
  readonly url: string | URL
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
   * 'error' refuses redirects (a failed request, retried like a network
   * error): for URLs checked against an allow-list, which a redirect would
   * otherwise step around. Default 'follow'.
   */
  readonly redirect?: 'follow' | 'error'
}

/** The run-scoped parts of a handler context a call needs. */
export type CallContext = Pick<HandlerContext, 'signal' | 'rateLimits'>

/**
 * Sends one request and returns the response when it is 2xx. Everything else
 * becomes a queue outcome, so handlers hold no retry loops:
 * - 429: the job snoozes for Retry-After (no attempt spent) and, with a
 *   `rateKey`, the key's rate is cut for every worker;
 * - 5xx, 408, timeouts and connection errors: UpstreamError, retried with backoff;
 * - any other 4xx: PermanentError (the request itself is wrong; retrying cannot help).
 * The run's AbortSignal (cancel, lease lost, shutdown) aborts the call.
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
  let res: Response
  try {
    res = await fetch(req.url, {
      method: req.method ?? (body === undefined ? 'GET' : 'POST'),
      headers,
      body,
      signal: AbortSignal.any([ctx.signal, timeout]),
      redirect: req.redirect ?? 'follow',
      // Required by fetch for a streamed request body.
      ...(body instanceof ReadableStream ? { duplex: 'half' } : {}),
    } as RequestInit)
  } catch (err) {
    // The run was aborted (cancel, shutdown): let the executor see its own reason.
    if (ctx.signal.aborted) throw ctx.signal.reason ?? err
    if (timeout.aborted) throw new UpstreamError(req.service, 'timeout', { cause: err })
    throw new UpstreamError(req.service, 'network', { cause: err })
  }
  if (res.ok) return res
  // Free the connection: the body of a refusal is not needed beyond a short excerpt.
  const excerpt = await readExcerpt(res)
  if (res.status === 429) {
    const waitMs = parseRetryAfter(res.headers.get('retry-after')) ?? DEFAULT_RETRY_AFTER_MS
    if (req.rateKey) return ctx.rateLimits.backOff(req.rateKey, waitMs)
    throw snooze(Math.max(1, waitMs))
  }
  if (res.status >= 500 || res.status === 408) throw new UpstreamError(req.service, 'server_error', { status: res.status })
  throw new PermanentError('upstream_rejected', {
    message: `${req.service} refused the request (HTTP ${res.status})`,
    details: { service: req.service, status: res.status, body: excerpt },
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

/** At most 300 characters of an error body, for the job's error record. */
async function readExcerpt(res: Response): Promise<string> {
  try {
    const text = await res.text()
    return text.length > 300 ? `${text.slice(0, 300)}…` : text
  } catch {
    return ''
  }
}
