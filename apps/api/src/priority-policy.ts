import { PRIORITIES, type Priority, type PriorityName } from '@backroom/queue-core'
import type { FastifyRequest } from 'fastify'
import { ApiError } from './api-error.ts'
import { principalOf } from './principal.ts'

/** The highest priority a store key may ask for when `API_STORE_MAX_PRIORITY` is unset. */
export const DEFAULT_STORE_MAX_PRIORITY: PriorityName = 'normal'

/** The priority names, most urgent first, as `API_STORE_MAX_PRIORITY` accepts them. */
export const PRIORITY_NAMES = Object.keys(PRIORITIES) as PriorityName[]

/**
 * The priority a job is enqueued with, under the policy that only platform
 * keys may raise priority above `ceiling`: a store key could otherwise mark
 * all its work urgent and run ahead of every other store until aging caught
 * up. A platform key's request passes as given. A store key asking for more
 * than the ceiling gets ApiError 403 `priority_not_allowed` naming it (a
 * refusal, not a silent clamp: the caller asked for something it may not
 * have, and a clamped job would run later than it believes). A store key
 * that names no priority gets normal, or the ceiling when that is lower.
 *
 * @example
 * const priority = priorityForKey(request, body.priority, 'normal') // throws 403 for 'urgent' from a store key
 */
export function priorityForKey(request: FastifyRequest, requested: Priority | undefined, ceiling: PriorityName): Priority | undefined {
  if (principalOf(request).storeId === null) return requested
  const limit = PRIORITIES[ceiling]
  if (requested === undefined) return limit > PRIORITIES.normal ? ceiling : undefined
  // Lower numbers run first; names map to their numbers (the schema has checked both).
  const value = typeof requested === 'number' ? requested : PRIORITIES[requested]
  if (value < limit) {
    throw new ApiError(403, 'priority_not_allowed', `a store key may ask for priority ${ceiling} (${limit}) or lower; higher priorities need a platform key`, {
      details: { maxPriority: ceiling, priority: requested },
    })
  }
  return requested
}
