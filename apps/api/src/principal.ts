import type { ApiPrincipal, Scope } from '@backroom/queue-core'
import type { FastifyRequest } from 'fastify'
import { ApiError } from './api-error.ts'

/** The authenticated principal of a /v1 request (the auth hook guarantees one). */
export function principalOf(request: FastifyRequest): ApiPrincipal {
  if (request.principal === null) throw new Error('route under /v1 reached without a principal')
  return request.principal
}

/**
 * The store a write acts for. A platform key must name it (`storeId` in the
 * body); a store key implies its own and may not name one (400: the field
 * does not belong in its body, even when it names the key's own store).
 */
export function storeForWrite(request: FastifyRequest, bodyStoreId: string | undefined): string {
  const { storeId } = principalOf(request)
  if (storeId === null) {
    if (bodyStoreId === undefined) throw new ApiError(400, 'store_required', 'a platform key must name the store: storeId')
    return bodyStoreId
  }
  if (bodyStoreId !== undefined) throw new ApiError(400, 'store_not_allowed', 'a store key acts for its own store: omit storeId')
  return storeId
}

/** What a request may read: a store key sees its store only; a platform key every store. */
export function scopeOf(request: FastifyRequest): Scope {
  return { storeId: principalOf(request).storeId }
}

/** Platform keys only (key management): 403 for a store key. */
export function requirePlatform(request: FastifyRequest): void {
  if (principalOf(request).storeId !== null) throw new ApiError(403, 'forbidden', 'only a platform key may do this')
}
