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
 * Authenticates `Authorization: Bearer <key>` on every route under /v1
 * (except /v1/internal, which has its own secret): a store key, a platform
 * key or BACKROOM_ADMIN_KEY. Anything else is 401 with the same body, so a
 * caller cannot tell a revoked key from a made-up one. The header is never
 * logged (the root logger redacts it).
 */
export const authPlugin = fp<AuthOptions>(async (app, options) => {
  const admin = options.adminKey === null ? null : digest(options.adminKey)
  app.decorateRequest('principal', null)
  app.addHook('onRequest', async (request, reply) => {
    const path = request.url.split('?')[0]!
    if (!path.startsWith('/v1/') || path.startsWith('/v1/internal/')) return
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

function unauthorized(reply: FastifyReply): FastifyReply {
  return reply
    .code(401)
    .header('www-authenticate', 'Bearer')
    .send(errorBody('unauthorized', 'a valid API key is required: Authorization: Bearer <key>'))
}
