import { createHash, timingSafeEqual } from 'node:crypto'
import { authenticateApiKey, type AdminKeyId, type ApiPrincipal, type Db } from '@backroom/queue-core'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { KeyUseAudit } from '../key-use-audit.ts'
import { errorBody } from '../schemas/error-body.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** Who the request's key speaks for; set on every /v1 route by the auth hook. */
    principal: ApiPrincipal | null
  }
}

/** Options of {@link authPlugin}. */
export interface AuthOptions {
  readonly db: Db
  /** BACKROOM_ADMIN_KEY: a platform key accepted as given. */
  readonly adminKey: string | null
  /** BACKROOM_ADMIN_KEY_PREVIOUS: accepted as well while clients move to the new admin key. */
  readonly previousAdminKey?: string | null
  /** Counts each authenticated request for the audit (none: not audited, as in some tests). */
  readonly keyUses?: KeyUseAudit | null
  /** Injected clock (ms), for the previous key's warning interval. */
  readonly now?: () => number
}

/** The principals the admin keys speak for: the audit and the logs tell them apart, never by value. */
const ADMIN: ApiPrincipal = { keyId: 'admin' satisfies AdminKeyId, storeId: null }
const ADMIN_PREVIOUS: ApiPrincipal = { keyId: 'admin-previous' satisfies AdminKeyId, storeId: null }

/** At most one warning per this interval that a client still uses BACKROOM_ADMIN_KEY_PREVIOUS. */
export const PREVIOUS_ADMIN_KEY_WARN_MS = 60_000

/**
 * Authenticates `Authorization: Bearer <key>` on every route whose pattern
 * is under /v1 (except /v1/internal, which has its own secret): a store key,
 * a platform key, BACKROOM_ADMIN_KEY or, during a rotation,
 * BACKROOM_ADMIN_KEY_PREVIOUS (logged and audited as `admin-previous`, with
 * a warning at most once a minute so operators see a client that has not
 * switched). Each authenticated request is counted for the key's use audit
 * (no I/O here: see key-use-audit.ts). Anything else is 401 with the same
 * body, so a caller cannot tell a revoked key from a made-up one. The header
 * is never logged (the root logger redacts it).
 *
 * The decision is made on the route the router matched, not on the raw URL:
 * the router decodes percent-escapes (`/%761/jobs` reaches `/v1/jobs`), so a
 * test of the URL's text could be stepped around by spelling it differently.
 * A request that matched no route is left to the 404 handler.
 */
export const authPlugin = fp<AuthOptions>(async (app, options) => {
  const matchAdmin = adminKeyMatcher(options.adminKey, options.previousAdminKey ?? null)
  const warnPreviousUsed = previousKeyWarner(options.now ?? Date.now)
  app.decorateRequest('principal', null)
  app.addHook('onRequest', async (request, reply) => {
    if (!needsKey(request.routeOptions.url)) return
    const token = bearerToken(request)
    let principal: ApiPrincipal | null = null
    if (token !== null) {
      principal = matchAdmin(token)
      if (principal === null && token.length <= 200) principal = await authenticateApiKey(options.db.kysely, token)
    }
    if (principal === null) return unauthorized(reply)
    request.principal = principal
    request.log = request.log.child({ keyId: principal.keyId, ...(principal.storeId === null ? {} : { storeId: principal.storeId }) })
    // Fastify's "request completed" line is written through reply.log, bound before this hook ran.
    reply.log = request.log
    options.keyUses?.record(principal.keyId, principal.storeId)
    if (principal === ADMIN_PREVIOUS) warnPreviousUsed(request)
  })
})

/**
 * Logs that a client still uses BACKROOM_ADMIN_KEY_PREVIOUS, at most once
 * per {@link PREVIOUS_ADMIN_KEY_WARN_MS} per process, with the uses since
 * the last warning and the caller's address, so operators can find the
 * client before they end the rotation (and a busy client cannot flood the log).
 */
function previousKeyWarner(now: () => number): (request: FastifyRequest) => void {
  let lastWarning = Number.NEGATIVE_INFINITY
  let usesSinceWarning = 0
  return (request) => {
    usesSinceWarning++
    const at = now()
    if (at - lastWarning < PREVIOUS_ADMIN_KEY_WARN_MS) return
    request.log.warn(
      { usesSinceLastWarning: usesSinceWarning, remoteAddress: request.ip },
      'a client still uses BACKROOM_ADMIN_KEY_PREVIOUS: move it to BACKROOM_ADMIN_KEY before the rotation ends',
    )
    lastWarning = at
    usesSinceWarning = 0
  }
}

/**
 * The check of a token against the admin keys: ADMIN, ADMIN_PREVIOUS or
 * null. Both comparisons always run, each in constant time over SHA-256
 * digests (so lengths may differ), and their results are combined without
 * a branch, so the time taken does not say which key matched, or whether
 * the first one did.
 */
function adminKeyMatcher(current: string | null, previous: string | null): (token: string) => ApiPrincipal | null {
  if (current === null) return () => null
  const currentDigest = digest(current)
  // With no previous key, a digest no token has (all zero bytes) keeps the work the same.
  const previousDigest = previous === null ? Buffer.alloc(currentDigest.length) : digest(previous)
  return (token) => {
    const given = digest(token)
    const isCurrent = timingSafeEqual(given, currentDigest)
    const isPrevious = timingSafeEqual(given, previousDigest) && previous !== null
    return isCurrent ? ADMIN : isPrevious ? ADMIN_PREVIOUS : null
  }
}

/** Whether a route pattern (undefined: no route matched) is one the key auth guards. */
function needsKey(routePattern: string | undefined): boolean {
  if (routePattern === undefined) return false
  return routePattern.startsWith('/v1/') && !routePattern.startsWith('/v1/internal/')
}

/** The token of an `Authorization: Bearer …` header, or null. */
export function bearerToken(request: FastifyRequest): string | null {
  const header = request.headers.authorization
  if (typeof header !== 'string') return null
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header)
  return match ? match[1]! : null
}

/** Compares two secrets in constant time (over their digests, so lengths may differ). */
export function secretsEqual(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected))
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest()
}

/** 401 `unauthorized` with `WWW-Authenticate: Bearer`. */
export function unauthorized(reply: FastifyReply, message = 'a valid API key is required: Authorization: Bearer <key>'): FastifyReply {
  return reply.code(401).header('www-authenticate', 'Bearer').send(errorBody('unauthorized', message))
}
