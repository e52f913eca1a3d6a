import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { connect, enqueue } from '@backroom/queue-core'
import { freePort, startEmbeddedPostgres, waitFor, type RunningPostgres } from '@backroom/queue-core/testing'
import { afterEach, describe, expect, it } from 'vitest'

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url))
const mainPath = fileURLToPath(new URL('../src/main.ts', import.meta.url))

let child: ChildProcess | null = null
let server: RunningPostgres | null = null
let base: string | null = null

afterEach(async () => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  child = null
  await server?.stop().catch(() => {})
  server = null
  if (base) await rm(base, { recursive: true, force: true })
  base = null
})

/** A PostgreSQL of this test's own, kept on disk across a stop so it can be started again. */
async function startServer(dataDir: string, port: number): Promise<RunningPostgres> {
  return startEmbeddedPostgres({ dataDir, persistent: true, port })
}

describe('worker process SIGTERM while PostgreSQL is down', () => {
  it('exits non-zero and names the jobs it could not hand back, which stay running for the rescuer', { timeout: 180_000 }, async () => {
    base = await mkdtemp(path.join(os.tmpdir(), 'backroom-worker-down-'))
    const dataDir = path.join(base, 'pg')
    const port = await freePort()
    server = await startServer(dataDir, port)
    const url = server.url

    let out = ''
    const { DATABASE_URL: _, ...rest } = process.env
    child = spawn(process.execPath, ['--conditions=@backroom/source', '--import', 'tsx', mainPath], {
      cwd: repoRoot,
      env: { ...rest, DATABASE_URL: url, LOG_LEVEL: 'info', WORKER_CONCURRENCY: '2', WORKER_SHUTDOWN_GRACE_MS: '200' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    child.stdout?.on('data', (c: Buffer) => (out += c.toString()))
    child.stderr?.on('data', (c: Buffer) => (out += c.toString()))
    await waitFor(() => out.includes('"msg":"worker pool started"') || child?.exitCode !== null, { timeoutMs: 60_000, what: 'worker start' })
    expect(child.exitCode, out).toBeNull()

    const db = connect({ connectionString: url, max: 2 })
    let ids: string[]
    try {
      const jobs = await Promise.all([1, 2].map(() => enqueue(db.kysely, { type: 'system.canary', storeId: 'store-down', payload: { sleepMs: 600_000 } })))
      ids = jobs.map((j) => j.job.id).sort()
      await waitFor(
        async () => (await db.pool.query(`select count(*)::int as n from jobs where state = 'running'`)).rows[0].n === 2,
        { what: 'both jobs running' },
      )
    } finally {
      await db.close()
    }

    await server.stop()
    server = null
    const exited = once(child, 'exit')
    child.kill('SIGTERM')
    const [code] = (await exited) as [number | null]
    expect(code, out).not.toBe(0)
    expect(code, out).not.toBeNull()
    expect(out).not.toContain('"msg":"shutdown complete"')
    const lines = out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg?: string; level?: number; err?: { code?: string; jobIds?: string[] } })
    const failed = lines.find((l) => l.msg === 'shutdown failed')
    expect(failed, out).toMatchObject({ level: 50, err: { code: 'shutdown_incomplete' } })
    expect([...(failed?.err?.jobIds ?? [])].sort()).toEqual(ids)
    expect(out).not.toContain(url)

    // Back up: the jobs it named are still running under its lease, for the rescuer to take back.
    server = await startServer(dataDir, port)
    const check = connect({ connectionString: server.url, max: 1 })
    try {
      const { rows } = await check.pool.query<{ id: string; state: string }>('select id::text, state from jobs order by id')
      expect(rows.map((r) => r.id).sort()).toEqual(ids)
      expect(rows.every((r) => r.state === 'running')).toBe(true)
    } finally {
      await check.close()
    }
  })
})
