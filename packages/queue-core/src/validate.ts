import { ValidationError } from './errors.ts'

/** Store and user ids are the platform's own identifiers: strings of 1 to 64 characters. */
export const MAX_ID_LENGTH = 64
/** Job type names: lowercase and dotted, such as `sync.inventory`. */
export const JOB_TYPE_NAME = /^[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)*$/
export const MAX_TYPE_LENGTH = 128

/** Throws ValidationError unless `storeId` is a store id. */
export function checkStoreId(storeId: unknown, field = 'storeId'): asserts storeId is string {
  if (typeof storeId !== 'string' || storeId.length === 0 || storeId.length > MAX_ID_LENGTH) {
    throw new ValidationError(`${field} must be a string of 1 to ${MAX_ID_LENGTH} characters`, { field })
  }
}

/** Throws ValidationError unless `type` is a job type name. */
export function checkJobType(type: unknown, field = 'type'): asserts type is string {
  if (typeof type !== 'string' || !JOB_TYPE_NAME.test(type) || type.length > MAX_TYPE_LENGTH) {
    throw new ValidationError(`${field} must be a lowercase dotted name such as sync.inventory`, { field })
  }
}
