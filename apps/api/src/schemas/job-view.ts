import type { Job } from '@backroom/queue-core'
import { Type, type Static } from 'typebox'

const Timestamp = Type.String({ format: 'date-time' })
const NullableTimestamp = Type.Union([Timestamp, Type.Null()])

/** One failed attempt, as the job keeps it. */
const JobErrorView = Type.Object({
  attempt: Type.Integer(),
  at: Type.String(),
  code: Type.String(),
  message: Type.String(),
})

/**
 * A job as the API shows it (the contract's view, plus `userId` and
 * `dedupeKey`, which callers set and filter by). Dates are ISO 8601 strings.
 * The payload, the result and older errors are left out on purpose: payloads
 * may hold a store's data and are never echoed back into dashboards or logs
 * by the API; `lastError` is what a dashboard shows.
 */
export const JobView = Type.Object({
  id: Type.String({ description: 'decimal id; key external calls on it' }),
  type: Type.String(),
  storeId: Type.String(),
  userId: Type.Union([Type.String(), Type.Null()]),
  state: Type.String({ description: 'pending, scheduled, running, paused, completed, failed or cancelled' }),
  priority: Type.Integer({ description: '1 (urgent) to 10 (low); normal is 5' }),
  attempt: Type.Integer(),
  maxAttempts: Type.Union([Type.Integer(), Type.Null()], { description: "null: the handler's default" }),
  dedupeKey: Type.Union([Type.String(), Type.Null()]),
  runAt: Timestamp,
  createdAt: Timestamp,
  startedAt: NullableTimestamp,
  finishedAt: NullableTimestamp,
  progress: Type.Unknown({ description: 'what the handler last reported, or null' }),
  lastError: Type.Union([JobErrorView, Type.Null()]),
})
export type JobView = Static<typeof JobView>

/** `{ job }`: GET /v1/jobs/:id, cancel and retry. */
export const JobEnvelope = Type.Object({ job: JobView })

/** `{ job, deduped }`: one enqueue's outcome. */
export const EnqueueOutcome = Type.Object({
  job: JobView,
  deduped: Type.Boolean({ description: 'true: a live job with this dedupe key already existed and is returned instead' }),
})

/**
 * A job's API view.
 *
 * @example
 * reply.send({ job: toJobView(await getJob(db, id, scope)) })
 */
export function toJobView(job: Job): JobView {
  return {
    id: job.id,
    type: job.type,
    storeId: job.storeId,
    userId: job.userId,
    state: job.state,
    priority: job.priority,
    attempt: job.attempt,
    maxAttempts: job.maxAttempts,
    dedupeKey: job.dedupeKey,
    runAt: job.runAt.toISOString(),
    createdAt: job.createdAt.toISOString(),
    startedAt: job.startedAt?.toISOString() ?? null,
    finishedAt: job.finishedAt?.toISOString() ?? null,
    progress: job.progress ?? null,
    lastError: job.lastError,
  }
}
