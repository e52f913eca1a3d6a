import { measure, medians, n, runsNote, suite, type Row } from '../harness.ts'
import { API_DB_POOL_MAX, API_STORE_RATE_UNBOUND, API_STORES, apiThroughput, type ApiLoad } from '../workloads/api-throughput.ts'

/** The three loads of the table, in its row order. */
interface ApiSizes {
  readonly single: ApiLoad
  /** Single enqueues with store keys: the same load as `single`, run in the row-secured store scope. */
  readonly singleStore: ApiLoad
  readonly batch100: ApiLoad
  readonly batch1000: ApiLoad
  readonly timeoutMs: number
}

/** The row label of a load. */
const route = (load: ApiLoad) =>
  load.jobsPerRequest === 1 ? `POST /v1/jobs${load.keys === 'store' ? ', store keys' : ''}` : `POST /v1/jobs/batch ×${n(load.jobsPerRequest)}`

/**
 * The `api` workload: enqueue throughput of the HTTP API, one API process
 * driven by autocannon, for single enqueues and batches of 100 and 1,000.
 * Backroom only: the peers have no HTTP API. Full-run request counts are
 * chosen to take about 10 s each on the 2-core machine the bench was written
 * on (measured there: about 560 single enqueues/s, 166 batches of 100/s and
 * 36 batches of 1,000/s).
 */
export const apiSuite = suite<ApiSizes>({
  key: 'api',
  sizes: {
    quick: {
      single: { jobsPerRequest: 1, requests: 300, connections: 4 },
      singleStore: { jobsPerRequest: 1, requests: 300, connections: 4, keys: 'store' },
      batch100: { jobsPerRequest: 100, requests: 20, connections: 4 },
      batch1000: { jobsPerRequest: 1_000, requests: 8, connections: 4 },
      timeoutMs: 60_000,
    },
    full: {
      single: { jobsPerRequest: 1, requests: 4_500, connections: 10 },
      singleStore: { jobsPerRequest: 1, requests: 4_500, connections: 10, keys: 'store' },
      batch100: { jobsPerRequest: 100, requests: 1_500, connections: 10 },
      batch1000: { jobsPerRequest: 1_000, requests: 400, connections: 10 },
      timeoutMs: 300_000,
    },
  },
  async run(ctx, size) {
    const systems = ctx.systems.filter((s) => s.name === 'backroom')
    if (systems.length === 0) return []
    const columns = {
      'requests/s': (r: { requestsPerSec: number }) => r.requestsPerSec,
      'jobs/s': (r: { jobsPerSec: number }) => r.jobsPerSec,
      'p50 (ms)': (r: { p50Ms: number }) => r.p50Ms,
      'p99 (ms)': (r: { p99Ms: number }) => r.p99Ms,
      'non-2xx': (r: { non2xx: number }) => r.non2xx,
    }
    const rows: Row[] = []
    for (const load of [size.single, size.singleStore, size.batch100, size.batch1000]) {
      const label = `api ${route(load)}`
      const results = await measure(ctx, label, systems, async (_s, db) => {
        const r = await apiThroughput({ url: db.url, load, label, timeoutMs: size.timeoutMs })
        ctx.check(
          r.non2xx === 0 && r.errors === 0,
          `${label}: expected ${n(r.requests)} 2xx answers, got ${n(r.ok)} (status codes ${JSON.stringify(r.statusCodes)}, ${r.errors} connection errors or timeouts)`,
        )
        ctx.check(
          r.jobsInDb === r.jobsExpected && r.storesInDb === Math.min(API_STORES, r.jobsExpected),
          `${label}: expected ${n(r.jobsExpected)} jobs (2xx answers × ${n(load.jobsPerRequest)}) over ${Math.min(API_STORES, r.jobsExpected)} stores ` +
            `in the database, found ${n(r.jobsInDb)} over ${r.storesInDb}`,
        )
        return r
      })
      rows.push(...medians(results, columns).map((row) => ({ ...row, system: route(load) })))
    }
    const { single, batch100, batch1000 } = size
    return [
      {
        workload: 'api',
        title:
          `HTTP API enqueue: one API process, ${single.connections} connections; ${n(single.requests)} single enqueues (with a platform key, then with store keys), ` +
          `${n(batch100.requests)} batches of 100, ${n(batch1000.requests)} batches of 1,000 (system.canary jobs, ${API_STORES} stores)`,
        columns: Object.keys(columns),
        rows,
        notes: [
          runsNote(ctx),
          'Each row starts one API process (`apps/api/src/server.ts`, TypeScript under tsx as `pnpm start:api` runs it) on a fresh database, ' +
            `with DB_POOL_MAX=${API_DB_POOL_MAX}, LOG_LEVEL=info (its logs go to a file), no REDIS_URL (the in-process rate limiter). ` +
            'The load generator, autocannon, runs in the bench process on the same machine: API, load generator and PostgreSQL share its 2 cores, ' +
            'so these are the figures of one small box, not of the API alone.',
          `API_STORE_RATE=${n(API_STORE_RATE_UNBOUND)}: far above what one process can enqueue, so the per-store rate limit (default 100 jobs/s per store) ` +
            'never binds here; the limiter still runs on every request. Requests use a platform key created through queue-core (one key lookup per request); ' +
            'single enqueues rotate over the stores, and each batch spans every store.',
          'The store-keys row sends the same single enqueues with each store\'s own key (one per store, rotated the same way). Its work runs in the ' +
            'row-secured store scope (one transaction as the role `backroom_store`, migration 0013): the difference to the row above is what that scope ' +
            'costs, one more round trip per enqueue plus the policies\' checks.',
          'A fixed number of requests rather than a fixed duration, so the run ends only when every request is answered: each run then checks that ' +
            'every answer was 2xx and that the jobs table holds exactly 2xx answers × jobs per request, over every store. ' +
            'requests/s and jobs/s count 2xx answers over the whole run; p50 and p99 are autocannon\'s request latencies.',
          'Every enqueue advances its store\'s fairness clock (a row of `stores`, updated in the insert), so concurrent batches that span the same ' +
            'stores take those row locks one after another (PostgreSQL backends were seen waiting on locks during the batch rows). Here every ' +
            'batch spans all 100 stores, the most contended case; batches of disjoint stores would wait less (not measured).',
        ],
      },
    ]
  },
})
