import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { ApiError } from '../api-error.ts'
import { createStoreGate, DEFAULT_GATE_WAIT_MS, DEFAULT_STORE_CONCURRENCY, DEFAULT_STORE_QUEUE, GateRefusedError, type ReleaseSlot, type StoreGate, type TenantLimits } from '../store-gate.ts'

/** Options of {@link fairSharePlugin}. */
export interface FairShareOptions {
  /** The API's pool size (DB_POOL_MAX; undefined: pg's default, 10): the gate admits a little less, see below. */
  readonly poolMax: number | undefined
  /** Requests one store key may have running at once (default 4). */
  readonly perStore?: number
  /** Requests one store key may have waiting (default 16); more answer 429 at once. */
  readonly queuePerStore?: number
  /**
   * Longest wait for a slot, then 503 `server_busy`: the pool's acquire
   * timeout (DB_POOL_ACQUIRE_TIMEOUT_MS), so a request waits no longer here
   * than it would have for a connection. Unset or 0 (pg: no limit): 10 s.
   */
  readonly maxWaitMs?: number
}

/**
 * Connections left outside the gate: key lookups (made before the store is
 * known), uploads' part writes, /readyz, /metrics and the upload sweep.
 */
const POOL_HEADROOM = 2

/** pg-pool's size when `max` is not given. */
const PG_DEFAULT_POOL_MAX = 10

/**
 * Routes not admitted through the gate. An upload streams its body inside
 * the handler, and a slot held while a slow client sends would keep others
 * waiting without using the database; uploads write in short per-part
 * transactions and have their own per-store rate.
 */
const UNGATED_ROUTES: ReadonlySet<string> = new Set(['/v1/uploads'])

/** Requests a platform key may have waiting: far more than any sane client keeps open, still a bound. */
const PLATFORM_QUEUE = 10_000

/** Retry-After of a 429 for a store with too many requests waiting: its own requests free slots within about a request's time. */
const BUSY_RETRY_AFTER_MS = 1_000

/**
 * Shares the API's database pool fairly between stores. Every request made
 * with an API key (store or platform) goes through a gate once its body is
 * in and checked (preHandler, so a slow sender holds nothing): at most the
 * pool size minus {@link POOL_HEADROOM} run at once, at most `perStore` of
 * one store key, and a freed slot goes to the store with the fewest
 * requests running. So one store's flood of list scans, or requests hanging
 * on a lock, delays only itself, and a store sending a request now and then
 * is served next. A platform key (the platform's own backend, acting for
 * every store) may use the whole gate, still in turn with the stores.
 *
 * Past `queuePerStore` waiting requests a store key gets 429
 * `too_many_requests` with Retry-After at once; a request that waits longer
 * than `maxWaitMs` gets 503 `server_busy` with Retry-After (the API as a
 * whole is overloaded, not this caller).
 */
export const fairSharePlugin = fp<FairShareOptions>(async (app, options) => {
  const capacity = Math.max(1, (options.poolMax ?? PG_DEFAULT_POOL_MAX) - POOL_HEADROOM)
  const perStore = Math.min(capacity, options.perStore ?? DEFAULT_STORE_CONCURRENCY)
  const gate: StoreGate = createStoreGate({ capacity, maxWaitMs: options.maxWaitMs || DEFAULT_GATE_WAIT_MS })
  const storeLimits: TenantLimits = { running: perStore, queued: options.queuePerStore ?? DEFAULT_STORE_QUEUE }
  // The platform's own backend: the whole gate, and a queue bounded only by its sockets in practice.
  const platformLimits: TenantLimits = { running: capacity, queued: PLATFORM_QUEUE }

  app.addHook('preHandler', async (request, reply) => {
    const principal = request.principal
    if (principal === null || UNGATED_ROUTES.has(request.routeOptions.url ?? '')) return
    const tenant = principal.storeId === null ? `platform key ${principal.keyId}` : `store ${principal.storeId}`
    const limits = principal.storeId === null ? platformLimits : storeLimits
    // The response's close: the answer went out, or the caller went away (then a wait ends too).
    const gone = new AbortController()
    reply.raw.once('close', () => gone.abort())
    let release: ReleaseSlot
    try {
      release = await gate.acquire(tenant, limits, gone.signal)
    } catch (err) {
      throw refusal(request, err)
    }
    if (gone.signal.aborted) release()
    else reply.raw.once('close', release)
  })
})

/** The answer for a request the gate refused (any other error passes through as it is). */
function refusal(request: FastifyRequest, err: unknown): unknown {
  if (!(err instanceof GateRefusedError)) return err
  const storeId = request.principal?.storeId ?? null
  if (err.reason === 'queue_full') {
    return new ApiError(429, 'too_many_requests', `${storeId === null ? 'this key' : `store ${storeId}`} has too many requests in progress; wait for some to finish`, {
      retryAfterMs: BUSY_RETRY_AFTER_MS,
      ...(storeId === null ? {} : { details: { storeId } }),
    })
  }
  if (err.reason === 'timeout') return new ApiError(503, 'server_busy', 'the API is busy; try again shortly', { retryAfterMs: BUSY_RETRY_AFTER_MS })
  // The caller went away while waiting: nothing will read this answer.
  return new ApiError(499, 'client_closed', 'the request was closed before it could be served')
}
