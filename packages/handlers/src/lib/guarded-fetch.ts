import type { LookupAddress, LookupOptions } from 'node:dns'
import { PermanentError } from '@backroom/queue-core'
import { Agent, fetch as undiciFetch, type Response as UndiciResponse } from 'undici'
import { FetchRefusedError } from './fetch-refused-error.ts'
import type { CheckedTarget, UrlGuard } from './url-guard.ts'

/** Redirects followed at most, per request. */
export const DEFAULT_MAX_REDIRECTS = 5

/** Largest response body read when the caller sets no limit (API answers are kilobytes). */
export const DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024

/**
 * The only request headers kept when a redirect leads to another origin.
 * Everything else (Authorization, API keys, cookies, idempotency keys) was
 * meant for the first origin and stays behind.
 */
const CROSS_ORIGIN_HEADERS = new Set(['accept', 'accept-language', 'user-agent'])

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308])

/** Methods whose redirects are followed: they carry no body to send twice. */
const FOLLOWED_METHODS = new Set(['GET', 'HEAD'])

/** Statuses whose responses have no body by definition. */
const NULL_BODY_STATUSES = new Set([204, 205, 304])

/** One guarded request. */
export interface GuardedRequest {
  /** For messages (`feed`, `deepl`…). */
  readonly service: string
  readonly method: string
  readonly headers: Readonly<Record<string, string>>
  readonly body?: string | Uint8Array | ReadableStream<Uint8Array>
  /** Aborts the lookup, the connection and the body (the caller's timeout and the run's signal). */
  readonly signal: AbortSignal
  /** 'follow' (default) follows redirects of GET and HEAD, each hop checked; 'error' refuses any redirect. */
  readonly redirect?: 'follow' | 'error'
  readonly maxRedirects?: number
  /** The body is cut off past this many bytes (default DEFAULT_MAX_RESPONSE_BYTES). */
  readonly maxBytes?: number
}

/**
 * fetch() with the URL guard at every step:
 * - each URL (the first and every redirect target) passes `guard.check`,
 *   which resolves its host once;
 * - the connection goes to the addresses that were checked, through an
 *   agent whose lookup answers with them: no second DNS lookup happens
 *   between the check and the connect, so a DNS answer that changes (DNS
 *   rebinding) cannot steer it elsewhere;
 * - redirects are followed by hand, for GET and HEAD only, at most
 *   `maxRedirects`; a hop to another origin drops every header but
 *   Accept, Accept-Language and User-Agent, so credentials never leave the
 *   origin they were meant for. A redirect of any other method is returned
 *   as is (the caller sees a 3xx);
 * - the body is cut off past `maxBytes` with PermanentError
 *   `response_too_large` (at once when Content-Length says so).
 *
 * Throws FetchRefusedError for a refused URL or redirect; network errors
 * and aborts as fetch does.
 */
export async function guardedFetch(guard: UrlGuard, url: URL, req: GuardedRequest): Promise<Response> {
  const maxRedirects = req.maxRedirects ?? DEFAULT_MAX_REDIRECTS
  let current = url
  let headers: Record<string, string> = { ...req.headers }
  for (let hop = 0; ; hop++) {
    const target = await guard.check(current, req.signal)
    const agent = pinnedAgent(target)
    let res: UndiciResponse
    try {
      res = await undiciFetch(current, {
        method: req.method,
        headers,
        body: req.body,
        signal: req.signal,
        redirect: 'manual',
        dispatcher: agent,
        // Required by fetch for a streamed request body.
        ...(req.body instanceof ReadableStream ? { duplex: 'half' } : {}),
      })
    } catch (err) {
      void agent.destroy()
      throw err
    }
    // Resolves once this response's body has been read or cancelled; then the agent's socket closes.
    void agent.close()
    const location = REDIRECT_STATUSES.has(res.status) ? res.headers.get('location') : null
    if (location === null || !FOLLOWED_METHODS.has(req.method)) return capped(res, req)
    await res.body?.cancel()
    if (req.redirect === 'error') throw new FetchRefusedError('redirect')
    if (hop >= maxRedirects) throw new FetchRefusedError('too_many_redirects')
    if (!URL.canParse(location, current.href)) throw new FetchRefusedError('redirect')
    const next = new URL(location, current)
    if (next.origin !== current.origin) headers = crossOriginHeaders(headers)
    current = next
  }
}

/**
 * An agent for one hop whose connections go to the checked addresses
 * only. Its lookup never asks DNS: it answers with what the guard checked.
 */
function pinnedAgent(target: CheckedTarget): Agent {
  return new Agent({
    connect: {
      lookup(
        hostname: string,
        options: LookupOptions,
        callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
      ) {
        const family = options.family === 4 || options.family === 6 ? options.family : null
        const usable = target.addresses.filter((a) => family === null || a.family === family)
        // An agent serves one checked host; any other name is refused rather than looked up.
        if (withoutDot(hostname.toLowerCase()) !== withoutDot(target.hostname) || usable.length === 0) {
          callback(Object.assign(new Error(`${hostname} was not checked`), { code: 'ENOTFOUND' }), [])
          return
        }
        if (options.all) callback(null, usable.map((a) => ({ address: a.address, family: a.family })))
        else callback(null, usable[0]!.address, usable[0]!.family)
      },
    },
  })
}

function withoutDot(hostname: string): string {
  return hostname.endsWith('.') ? hostname.slice(0, -1) : hostname
}

function crossOriginHeaders(headers: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => CROSS_ORIGIN_HEADERS.has(name.toLowerCase())))
}

/** The response with its body limited to `req.maxBytes`. */
function capped(res: UndiciResponse, req: GuardedRequest): Response {
  const limit = req.maxBytes ?? DEFAULT_MAX_RESPONSE_BYTES
  const tooLarge = () =>
    new PermanentError('response_too_large', {
      message: `${req.service}: the response is over the ${limit}-byte limit`,
      details: { service: req.service, limit },
    })
  const declared = Number(res.headers.get('content-length') ?? 0)
  if (declared > limit) {
    void res.body?.cancel()
    throw tooLarge()
  }
  let seen = 0
  const limiter = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      seen += chunk.byteLength
      // Erroring here cancels the source: the connection is dropped, not drained.
      if (seen > limit) controller.error(tooLarge())
      else controller.enqueue(chunk)
    },
  })
  if (res.body === null || NULL_BODY_STATUSES.has(res.status)) {
    void res.body?.cancel()
    return new Response(null, { status: res.status, statusText: res.statusText, headers: [...res.headers] })
  }
  const body = (res.body as ReadableStream<Uint8Array>).pipeThrough(limiter)
  return new Response(body, { status: res.status, statusText: res.statusText, headers: [...res.headers] })
}
