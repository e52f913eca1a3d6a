import type { Logger } from 'pino'
import type { Static, TSchema } from 'typebox'
import { Compile } from 'typebox/compile'
import type { ClaimedJob } from './types.ts'
import { ValidationError } from './errors.ts'
import type { HandlerRateLimits } from './rate-limits.ts'

/** What a handler gets besides its payload. */
export interface HandlerContext<P = unknown> {
  /** The job being run (id, storeId, attempt…). Key external calls on `job.id`. */
  readonly job: ClaimedJob<P>
  /** Logger bound to jobId, jobType, storeId, attempt and workerId. */
  readonly log: Logger
  /** Aborts on timeout, cancellation, lost lease or shutdown; pass it to fetch and friends. */
  readonly signal: AbortSignal
  /** Records progress (any JSON) on the job; fenced like every worker write. */
  progress(value: unknown): Promise<void>
  /** Extends the lease now (long steps between natural heartbeats). */
  heartbeat(): Promise<void>
  /** Rate limits shared by every worker: take tokens before a call, back off on 429. */
  readonly rateLimits: HandlerRateLimits
}

/** A job type's definition: its payload schema, limits and code. */
export interface HandlerDefinition<S extends TSchema = TSchema> {
  readonly type: string
  readonly payload: S
  /** Attempts when the enqueue did not say. */
  readonly maxAttempts?: number
  /** The run is aborted and counts as failed after this long. */
  readonly timeoutMs?: number
  /**
   * Fairness cost of one job of this type (default 1): a store is charged
   * cost / weight per job, so a cost-5 import chunk uses five times the share
   * of a cost-1 translation. Workers record it on start; an operator's
   * configureJobType cost wins over it, and an enqueue may give its own.
   */
  readonly cost?: number
  run(payload: Static<S>, ctx: HandlerContext<Static<S>>): Promise<unknown> | unknown
}

/** A definition plus its compiled payload check. */
export interface Handler<S extends TSchema = TSchema> extends HandlerDefinition<S> {
  /** Returns the payload, or throws ValidationError with the schema errors. */
  parse(payload: unknown): Static<S>
}

/**
 * Defines a job type. The payload schema (TypeBox) is checked before `run`;
 * a payload that fails it fails the job at once (no retry).
 *
 * @example
 * export const canary = defineHandler({
 *   type: 'system.canary',
 *   payload: Type.Object({ sleepMs: Type.Optional(Type.Integer({ minimum: 0 })) }),
 *   async run(payload, { signal }) { await setTimeout(payload.sleepMs ?? 0, undefined, { signal }) },
 * })
 */
export function defineHandler<S extends TSchema>(definition: HandlerDefinition<S>): Handler<S> {
  if (definition.cost !== undefined && !(Number.isFinite(definition.cost) && definition.cost > 0 && definition.cost <= 1e6)) {
    throw new ValidationError(`${definition.type}: cost must be a number above 0`, { type: definition.type, field: 'cost' })
  }
  const check = Compile(definition.payload)
  return {
    ...definition,
    parse(payload: unknown): Static<S> {
      if (check.Check(payload)) return payload as Static<S>
      const errors = [...check.Errors(payload)].slice(0, 10).map((e) => ({ path: e.instancePath, message: e.message }))
      throw new ValidationError(`payload does not match the ${definition.type} schema`, { errors })
    },
  }
}

/** Handlers by job type. */
export type HandlerRegistry = ReadonlyMap<string, Handler>

/** The fairness costs the handlers declare (types without one are left out), for job_types. */
export function declaredCosts(handlers: HandlerRegistry): Array<{ type: string; cost: number }> {
  return [...handlers.values()].flatMap((h) => (h.cost === undefined ? [] : [{ type: h.type, cost: h.cost }]))
}

/** Builds a registry; throws if two handlers claim the same type. */
export function createRegistry(handlers: ReadonlyArray<Handler>): HandlerRegistry {
  const map = new Map<string, Handler>()
  for (const h of handlers) {
    if (map.has(h.type)) throw new ValidationError(`two handlers for job type ${h.type}`, { type: h.type })
    map.set(h.type, h)
  }
  return map
}
