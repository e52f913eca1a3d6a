import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { enqueue, getJob } from '@backroom/queue-core'
import { freePort, useTestDatabase, waitFor } from '@backroom/queue-core/testing'
import { afterEach, describe, expect, it } from 'vitest'

const t = useTestDatabase()
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url))
const mainPath = fileURLToPath(new URL('../src/main.ts', import.meta.url))

interface Started {
  readonly child: ChildProcess
  output(): string
}

let current: ChildProcess | null = null

function startMain(env: Record<string, string>): Started {
  let out = ''
  const { DATABASE_URL: _, ...rest } = process.env
  const child = spawn(process.execPath, ['--conditions=@backroom/source', '--import', 'tsx', mainPath], {
    cwd: repoRoot,
    env: { ...rest, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()))
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()))
  current = child
  return { child, output: () => out }
}

afterEach(() => {
  if (current && current.exitCode === null && current.signalCode === null) current.kill('SIGKILL')
  current = null
})

describe('worker process', () => {
  it('runs a system.canary job, then drains and exits 0 on SIGTERM without printing the database URL', async () => {
    const metricsPort = await freePort()
    const w = startMain({ DATABASE_URL: t.url, WORKER_CONCURRENCY: '2', WORKER_METRICS_PORT: String(metricsPort) })
    await waitFor(() => w.output().includes('"msg":"worker pool started"') || w.child.exitCode !== null, {
      timeoutMs: 30_000,
      what: 'worker start',
    })
    expect(w.child.exitCode, w.output()).toBeNull()

    const { job } = await enqueue(t.db.kysely, { type: 'system.canary', storeId: 'store-e2e', payload: {} })
    await waitFor(async () => (await getJob(t.db.kysely, job.id)).state === 'completed', { what: 'canary completed' })
    // WORKER_METRICS_PORT: this worker's runs, for Prometheus.
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()
    expect(metrics).toContain('backroom_worker_runs_total{type="system.canary",outcome="completed"} 1')
    expect(metrics).toContain('backroom_worker_run_duration_seconds_count{type="system.canary",outcome="completed"} 1')

    const exited = once(w.child, 'exit')
    w.child.kill('SIGTERM')
    const [code] = await exited
    expect(code, w.output()).toBe(0)
    expect(w.output()).toContain('"msg":"worker pool stopped"')
    expect(w.output()).not.toContain(t.url)
  })

  it('fails fast with exit 1 and names the missing variable', async () => {
    const w = startMain({})
    const [code] = await once(w.child, 'exit')
    expect(code).toBe(1)
    expect(w.output()).toContain('"msg":"invalid configuration"')
    expect(w.output()).toContain('DATABASE_URL is required')
  })
})
