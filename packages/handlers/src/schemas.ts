import type { TSchema } from 'typebox'
import { CanaryPayload } from './system/canary-payload.ts'

/**
 * Payload schemas by job type, without handler code: the API validates
 * enqueued payloads with these and never loads handlers or their clients.
 */
export const payloadSchemas: Readonly<Record<string, TSchema>> = {
  'system.canary': CanaryPayload,
}

/** Every job type this package defines (the keys of payloadSchemas). */
export const jobTypes: ReadonlyArray<string> = Object.keys(payloadSchemas)

export { CanaryPayload }
