import { payloadSchemas } from '@backroom/handlers/schemas'
import type { TSchema } from 'typebox'
import { Compile } from 'typebox/compile'
import { ApiError } from './api-error.ts'

/** Why a payload was refused: a stable code, a message, and per-path details for schema failures. */
export interface PayloadProblem {
  readonly code: 'unknown_job_type' | 'invalid_payload'
  readonly message: string
  readonly details?: ReadonlyArray<{ readonly path: string; readonly message: string }>
}

/** At most this many schema errors are reported per payload: enough to fix it, short enough to log. */
const MAX_PAYLOAD_ERRORS = 10

type Checker = ReturnType<typeof Compile>
const checkers = new Map<string, Checker>()

/** The compiled check for a type's schema, compiled on first use and kept. */
function checkerFor(type: string): Checker | undefined {
  let checker = checkers.get(type)
  if (checker) return checker
  const schema: TSchema | undefined = Object.hasOwn(payloadSchemas, type) ? payloadSchemas[type] : undefined
  if (!schema) return undefined
  checker = Compile(schema)
  checkers.set(type, checker)
  return checker
}

/**
 * Checks an enqueued payload against its job type's schema from
 * `@backroom/handlers/schemas` (schemas only: the API never loads handler
 * code). Returns null when the payload is valid.
 *
 * @example
 * payloadProblem('system.canary', { sleepMs: -1 }) // { code: 'invalid_payload', details: [{ path: '/sleepMs', … }] }
 */
export function payloadProblem(type: string, payload: unknown): PayloadProblem | null {
  const checker = checkerFor(type)
  if (!checker) return { code: 'unknown_job_type', message: `no job type named ${type}` }
  if (checker.Check(payload)) return null
  const details = [...checker.Errors(payload)]
    .slice(0, MAX_PAYLOAD_ERRORS)
    .map((e) => ({ path: `/payload${e.instancePath}`, message: e.message }))
  return { code: 'invalid_payload', message: `payload does not match the schema of ${type}`, details }
}

/** {@link payloadProblem} as a 400 ApiError, for single enqueues. */
export function checkPayload(type: string, payload: unknown): void {
  const problem = payloadProblem(type, payload)
  if (problem) throw new ApiError(400, problem.code, problem.message, { details: problem.details })
}
