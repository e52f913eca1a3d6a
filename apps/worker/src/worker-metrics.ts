import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { ClaimedJob, RunOutcome } from '@backroom/queue-core'
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client'

/** A worker's Prometheus metrics, fed by the pool's outcome hook. */
export interface WorkerMetrics {
  readonly registry: Registry
  /** The worker pool's `onOutcome`: one run ended with `outcome`. */
  onOutcome(job: ClaimedJob, outcome: RunOutcome): void
}

/**
 * Counts runs by type and outcome (`backroom_worker_runs_total`: completed,
 * failed, retried, snoozed, cancelled, released, lease_lost; every run was one
 * claimed job) and times them (`backroom_worker_run_duration_seconds`, from
 * the claim, so a prefetched job's wait for a slot is included), plus the
 * process's default metrics. The API's /metrics shows the queue from the
 * database; these show what each worker did.
 */
export function createWorkerMetrics(): WorkerMetrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const runs = new Counter({
    name: 'backroom_worker_runs_total',
    help: 'Job runs this worker ended, by job type and outcome',
    labelNames: ['type', 'outcome'] as const,
    registers: [registry],
  })
  const duration = new Histogram({
    name: 'backroom_worker_run_duration_seconds',
    help: 'From claim to outcome, by job type and outcome',
    labelNames: ['type', 'outcome'] as const,
    buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900],
    registers: [registry],
  })
  return {
    registry,
    onOutcome(job, outcome) {
      runs.inc({ type: job.type, outcome })
      if (job.startedAt) duration.observe({ type: job.type, outcome }, Math.max(0, Date.now() - job.startedAt.getTime()) / 1000)
    },
  }
}

/** A listening metrics endpoint. */
export interface MetricsServer {
  readonly port: number
  close(): Promise<void>
}

/**
 * Serves `GET /metrics` from `registry` on `port` (0: any free port) on every
 * interface, for a Prometheus scraper inside the deployment's network; any
 * other request is 404. It holds counts per job type, no store ids or payloads.
 */
export async function startMetricsServer(registry: Registry, port: number): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"code":"not_found","message":"only GET /metrics here"}}')
      return
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      () => res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":{"code":"internal_error","message":"internal error"}}'),
    )
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '0.0.0.0', () => resolve())
  })
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
