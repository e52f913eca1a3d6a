import { ValidationError } from './errors.ts'

/** Store and user ids are the platform's own identifiers: strings of 1 to 64 characters. */
export const MAX_ID_LENGTH = 64
/** Job type names: lowercase and dotted, such as `sync.inventory`. */
export const JOB_TYPE_NAME = /^[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)*$/
export const MAX_TYPE_LENGTH = 128

/** Throws ValidationError unless `storeId` is a store id. */
export function checkStoreId(storeId: unknown, field = 'storeId'): asserts storeId is string {
  if (typeof storeId !== 'string' || storeId.length === 0 || storeId.length > MAX_ID_LENGTH || !isStorableText(storeId)) {
    throw new ValidationError(`${field} must be a string of 1 to ${MAX_ID_LENGTH} characters`, { field })
  }
}

/**
 * Whether PostgreSQL can store `text` as given: no U+0000 (text and jsonb
 * cannot hold it) and no lone UTF-16 surrogate (it would come back as U+FFFD,
 * a different string: a dedupe key would then never match itself).
 */
export function isStorableText(text: string): boolean {
  return !text.includes('\u0000') && !LONE_SURROGATE.test(text)
}

/** A high surrogate not followed by a low one, or a low one not preceded by a high one. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** The largest bigint: ids are bigints as decimal strings. */
const MAX_BIGINT = 9_223_372_036_854_775_807n

/**
 * Whether `id` is a bigint id as a decimal string (1 to 9223372036854775807,
 * no sign, no leading zero): anything else names no row, and casting it
 * would fail in the database.
 */
export function isBigintId(id: unknown): id is string {
  return typeof id === 'string' && /^[1-9][0-9]{0,18}$/.test(id) && BigInt(id) <= MAX_BIGINT
}

/** Throws ValidationError unless `type` is a job type name. */
export function checkJobType(type: unknown, field = 'type'): asserts type is string {
  if (typeof type !== 'string' || !JOB_TYPE_NAME.test(type) || type.length > MAX_TYPE_LENGTH) {
    throw new ValidationError(`${field} must be a lowercase dotted name such as sync.inventory`, { field })
  }
}
