/** Requests one store key may have running at once when the caller does not say. */
export const DEFAULT_STORE_CONCURRENCY = 4
/** Requests one store key may have waiting for a slot when the caller does not say; past it, 429 at once. */
export const DEFAULT_STORE_QUEUE = 16
/** Longest wait for a slot when the caller does not say: queue-core's default pool acquire timeout. */
export const DEFAULT_GATE_WAIT_MS = 10_000

/** Why a request got no slot. */
export type GateRefusal = 'queue_full' | 'timeout' | 'aborted'

/** Thrown by {@link StoreGate.acquire} when a request gets no slot. */
export class GateRefusedError extends Error {
  readonly reason: GateRefusal
  readonly tenant: string
  constructor(reason: GateRefusal, tenant: string) {
    super(`no request slot for ${tenant}: ${reason}`)
    this.name = 'GateRefusedError'
    this.reason = reason
    this.tenant = tenant
  }
}

/** Options of {@link createStoreGate}. */
export interface StoreGateOptions {
  /** Requests running at once, all tenants together. */
  readonly capacity: number
  /** Longest wait for a slot. */
  readonly maxWaitMs: number
}

/** What one tenant may have: running at once, and waiting beyond those (more are refused at once). */
export interface TenantLimits {
  readonly running: number
  readonly queued: number
}

/** A slot's release: call once when the request is over (later calls do nothing). */
export type ReleaseSlot = () => void

/** Admission of requests by tenant (see {@link createStoreGate}). */
export interface StoreGate {
  /**
   * Waits for a slot of `tenant`, within its `limits`. Throws
   * {@link GateRefusedError}: `queue_full` at once when the tenant already
   * has `limits.queued` waiting, `timeout` after `maxWaitMs`, `aborted` when
   * `signal` fires first.
   */
  acquire(tenant: string, limits: TenantLimits, signal?: AbortSignal): Promise<ReleaseSlot>
  /** Requests running and waiting now, all tenants together. */
  load(): { readonly running: number; readonly waiting: number }
}

interface Waiter {
  readonly seq: number
  readonly grant: (release: ReleaseSlot) => void
}

interface Tenant {
  running: number
  limit: number
  readonly waiters: Waiter[]
}

/**
 * Fair admission of requests to a shared resource (the API's database pool)
 * between tenants (stores). At most `capacity` requests run at once and at
 * most `limit` of one tenant; when a slot frees, it goes to the waiting
 * tenant with the fewest requests running, the longest waiting among equals.
 * So a tenant sending one request at a time is served next whatever others
 * have queued, and a tenant whose requests hang (on a lock, a slow query)
 * holds no more than its own limit. Memory: one entry per tenant with
 * requests running or waiting, each waiting at most its `queued` limit.
 *
 * @example
 * const gate = createStoreGate({ capacity: 8, maxWaitMs: 10_000 })
 * const release = await gate.acquire('store-42', { running: 4, queued: 16 })
 * try { await work() } finally { release() }
 */
export function createStoreGate(options: StoreGateOptions): StoreGate {
  const tenants = new Map<string, Tenant>()
  /** Tenants with waiters, in the order they began waiting. */
  const waiting = new Set<string>()
  let running = 0
  let queued = 0
  let seq = 0

  function forgetIfIdle(name: string, tenant: Tenant): void {
    if (tenant.running === 0 && tenant.waiters.length === 0) tenants.delete(name)
  }

  function releaseFor(name: string, tenant: Tenant): ReleaseSlot {
    let released = false
    return () => {
      if (released) return
      released = true
      tenant.running--
      running--
      forgetIfIdle(name, tenant)
      grantNext()
    }
  }

  /** Hands free slots to the eligible tenant with the fewest running, oldest waiter first among equals. */
  function grantNext(): void {
    while (running < options.capacity && waiting.size > 0) {
      let best: { name: string; tenant: Tenant } | null = null
      for (const name of waiting) {
        const tenant = tenants.get(name)!
        if (tenant.running >= tenant.limit) continue
        if (best === null || tenant.running < best.tenant.running || (tenant.running === best.tenant.running && tenant.waiters[0]!.seq < best.tenant.waiters[0]!.seq)) {
          best = { name, tenant }
        }
      }
      if (best === null) return
      const waiter = best.tenant.waiters.shift()!
      queued--
      if (best.tenant.waiters.length === 0) waiting.delete(best.name)
      best.tenant.running++
      running++
      waiter.grant(releaseFor(best.name, best.tenant))
    }
  }

  return {
    acquire(name, limits, signal) {
      const limit = limits.running
      let tenant = tenants.get(name)
      if (!tenant) {
        tenant = { running: 0, limit, waiters: [] }
        tenants.set(name, tenant)
      }
      tenant.limit = limit
      if (signal?.aborted) return Promise.reject(new GateRefusedError('aborted', name))
      if (running < options.capacity && tenant.running < limit && tenant.waiters.length === 0) {
        tenant.running++
        running++
        return Promise.resolve(releaseFor(name, tenant))
      }
      if (tenant.waiters.length >= limits.queued) {
        forgetIfIdle(name, tenant)
        return Promise.reject(new GateRefusedError('queue_full', name))
      }
      const own = tenant
      return new Promise<ReleaseSlot>((resolve, reject) => {
        const give = (reason: GateRefusal) => {
          const at = own.waiters.indexOf(waiter)
          if (at < 0) return
          own.waiters.splice(at, 1)
          queued--
          if (own.waiters.length === 0) waiting.delete(name)
          forgetIfIdle(name, own)
          cleanup()
          reject(new GateRefusedError(reason, name))
        }
        const onAbort = () => give('aborted')
        const timer = setTimeout(() => give('timeout'), options.maxWaitMs)
        const cleanup = () => {
          clearTimeout(timer)
          signal?.removeEventListener('abort', onAbort)
        }
        const waiter: Waiter = {
          seq: seq++,
          grant: (release) => {
            cleanup()
            resolve(release)
          },
        }
        signal?.addEventListener('abort', onAbort, { once: true })
        own.waiters.push(waiter)
        queued++
        waiting.add(name)
      })
    },
    load: () => ({ running, waiting: queued }),
  }
}
