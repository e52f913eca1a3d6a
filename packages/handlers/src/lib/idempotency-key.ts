import type { ClaimedJob } from '@backroom/queue-core'

/**
 * A key for one external side effect of a job: the same on every attempt of
 * that job (the id is stable, the attempt is not part of it), different for
 * each step, so a provider that honours Idempotency-Key applies a retried
 * call once.
 *
 * @example
 * headers: { 'idempotency-key': idempotencyKey(ctx.job, 'upload') }
 */
export function idempotencyKey(job: Pick<ClaimedJob, 'id' | 'type'>, step: string): string {
  return `backroom:${job.type}:${job.id}:${step}`
}
