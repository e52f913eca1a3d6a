import { createHash, timingSafeEqual } from 'node:crypto'
import { authenticateApiKey, type ApiPrincipal, type Db } from '@backroom/queue-core'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
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
}

/** The principal BACKROOM_ADMIN_KEY speaks for. */
const ADMIN: ApiPrincipal = { keyId: 'admin', storeId: null }

/**
 * Authenticates `Authorization: Bearer <key>` on every route whose pattern
 * is under /v1 (except /v1/internal, which has its own secret): a store key,
 * a platform key or BACKROOM_ADMIN_KEY. Anything else is 401 with the same
 * body, so a caller cannot tell a revoked key from a made-up one. The header
 * is never logged (the root logger redacts it).
 *
 * The decision is made on the route the router matched, not on the raw URL:
 * the router decodes percent-escapes (`/%761/jobs` reaches `/v1/jobs`), so a
 * test of the URL's text could be stepped around by spelling it differently.
 * A request that matched no route is left to the 404 handler.
 */
export const authPlugin = fp<AuthOptions>(async (app, options) => {
  const admin = options.adminKey === null ? null : digest(options.adminKey)
  app.decorateRequest('principal', null)
  app.addHook('onRequest', async (request, reply) => {
    if (!needsKey(request.routeOptions.url)) return
    const token = bearerToken(request)
    let principal: ApiPrincipal | null = null
    if (token !== null) {
      if (admin !== null && timingSafeEqual(digest(token), admin)) principal = ADMIN
      else if (token.length <= 200) principal = await authenticateApiKey(options.db.kysely, token)
    }
    if (principal === null) return unauthorized(reply)
    request.principal = principal
    request.log = request.log.child({ keyId: principal.keyId, ...(principal.storeId === null ? {} : { storeId: principal.storeId }) })
    // Fastify's "request completed" line is written through reply.log, bound before this hook ran.
    reply.log = request.log
  })
})

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
