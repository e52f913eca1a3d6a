import { PRIORITIES } from '@backroom/queue-core'
import { Type, type Static } from 'typebox'

/** How far ahead `delayMs` may schedule a job (a year): beyond it is a caller's bug. */
export const MAX_DELAY_MS = 365 * 24 * 3_600_000

const StoreOrUserId = Type.String({ minLength: 1, maxLength: 64 })

/**
 * `POST /v1/jobs` (and each item of a batch). `additionalProperties: false`:
 * fields that belong to the queue (state, attempt, lease…) are refused, not
 * dropped, so a caller learns at once that they mean nothing here.
 */
export const EnqueueBody = Type.Object(
  {
    type: Type.String({ minLength: 1, maxLength: 128, description: 'job type, e.g. sync.inventory' }),
    payload: Type.Unknown({ description: "checked against the job type's payload schema" }),
    storeId: Type.Optional({ ...StoreOrUserId, description: 'platform keys must name the store; store keys must omit it' }),
    priority: Type.Optional(
      Type.Union([
        ...Object.keys(PRIORITIES).map((name) => Type.Literal(name)),
        Type.Integer({ minimum: 1, maximum: 10 }),
      ]),
    ),
    runAt: Type.Optional(Type.String({ format: 'date-time', description: 'run no earlier than this (exclusive with delayMs)' })),
    delayMs: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_DELAY_MS })),
    dedupeKey: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
    maxAttempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
    userId: Type.Optional(StoreOrUserId),
  },
  { additionalProperties: false },
)
export type EnqueueBody = Static<typeof EnqueueBody>

/**
 * `POST /v1/jobs/batch`. Items are checked one by one in the route (each
 * against {@link EnqueueBody}), so a bad batch answers with every bad item's
 * index at once instead of the first schema error.
 */
export const BatchBody = Type.Object(
  {
    jobs: Type.Array(Type.Unknown({ description: 'an enqueue body (see POST /v1/jobs)' }), { minItems: 1 }),
  },
  { additionalProperties: false },
)
export type BatchBody = Static<typeof BatchBody>

