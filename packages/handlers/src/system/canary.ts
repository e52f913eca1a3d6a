import { setTimeout as sleep } from 'node:timers/promises'
import { defineHandler, PermanentError } from '@backroom/queue-core'
import { CanaryPayload } from './canary-payload.ts'

/**
 * `system.canary`: does nothing but run. For end-to-end health checks, smoke
 * tests and benchmarks. `sleepMs` holds the slot (abortable); `fail` makes the
 * attempt fail, retryably or permanently.
 */
export const canary = defineHandler({
  type: 'system.canary',
  payload: CanaryPayload,
  maxAttempts: 3,
  timeoutMs: 60_000,
  async run(payload, { signal }) {
    if (payload.sleepMs) await sleep(payload.sleepMs, undefined, { signal })
    if (payload.fail === 'permanent') throw new PermanentError('canary_failed', { message: 'canary asked to fail permanently' })
    if (payload.fail === 'retryable') throw Object.assign(new Error('canary asked to fail'), { code: 'canary_failed' })
    return { ok: true }
  },
})
