import { Type } from 'typebox'

/**
 * The SKU that means "every SKU of the store". A full sync sent with a
 * coalesce key must carry it, because queue-core's `append` strategy only
 * concatenates the `skus` arrays: an absent or empty list folded into an open
 * targeted job adds nothing, and the full sync would be lost. With the
 * sentinel, a full sync folded with targeted ones (in either order) stays a
 * full sync: it absorbs them.
 */
export const ALL_SKUS = '*'

/**
 * Most SKUs one enqueue may name; also the most one request to the inventory
 * API asks for (`skus=` chunk).
 */
export const MAX_SKUS_PER_ENQUEUE = 500

/** Most enqueues folded into one open job (the coalesce `maxBatch`). */
export const MAX_FOLDED_ENQUEUES = 100

/**
 * A SKU as the inventory API can be asked for it: 1-128 characters (as
 * shop.products allows), no comma (the `skus=` list is comma-separated) and
 * no control characters. The exact value `*` is {@link ALL_SKUS}.
 */
const Sku = Type.String({ minLength: 1, maxLength: 128, pattern: '^[^,\\u0000-\\u001f\\u007f]+$' })

/**
 * Payload of `sync.inventory` as callers enqueue it: `{ skus?: string[] }`.
 * Absent, empty, or containing `"*"`: a full sync of the store. Otherwise
 * just those SKUs (up to 500 per enqueue). The store is never in the payload:
 * it is the job's storeId.
 */
export const SyncInventoryPayload = Type.Object(
  {
    skus: Type.Optional(Type.Array(Sku, { maxItems: MAX_SKUS_PER_ENQUEUE })),
  },
  { additionalProperties: false },
)

/**
 * Payload of `sync.inventory` as the worker runs it. Coalescing appends the
 * `skus` of up to {@link MAX_FOLDED_ENQUEUES} enqueues into one job, so the
 * list may be that many times longer than one enqueue allows; a job that
 * passed the enqueue check must never fail this one.
 */
export const SyncInventoryJobPayload = Type.Object(
  {
    skus: Type.Optional(Type.Array(Sku, { maxItems: MAX_SKUS_PER_ENQUEUE * MAX_FOLDED_ENQUEUES })),
  },
  { additionalProperties: false },
)
