// The system as deployed for the soak: one API process and two worker
// processes, each a child process started as `pnpm start:api` /
// `pnpm start:worker` start them, on a database the soak creates itself.
import { closeSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { createApiKey, connect, migrate } from '@backroom/queue-core'
import { spawnService, type Service } from '../../../scripts/lib/spawn-service.ts'
import { admin, withDatabase } from '../database.ts'

const root = fileURLToPath(new URL('../../../', import.meta.url))

/** Worker processes in the soak, as a small deployment runs them. */
export const SOAK_WORKERS = 2

/** A running soak deployment. */
export interface SoakSystem {
  readonly databaseUrl: string
  readonly databaseName: string
  readonly origin: string
  /** A platform key minted for the load generator. */
  readonly key: string
  /** api, worker-1, worker-2. */
  readonly services: ReadonlyArray<Service>
  readonly logDir: string
  /** SIGTERM to every service; resolves with each one's exit code. */
  stop(): Promise<Record<string, number>>
  /** Drops the database and the log files (or not, with keep). */
  dispose(keep: boolean): Promise<void>
}

/** A port free on 127.0.0.1 now (the API takes no PORT=0). */
async function freePort(): Promise<number> {
  const probe = createServer()
  await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(0, '127.0.0.1', resolve))
  const { port } = probe.address() as { port: number }
  await new Promise((resolve) => probe.close(resolve))
  return port
}

/**
 * Creates `backroom_soak_<time>` on `serverUrl`, migrates it, mints a
 * platform key, and starts the API and the workers (logs at info, to files,
 * so their volume is not charged to this process). Resolves once the API
 * answers /readyz. `extraEnv` goes to every service (the handlers' provider endpoints).
 */
export async function startSoakSystem(serverUrl: string, extraEnv: Readonly<Record<string, string>> = {}): Promise<SoakSystem> {
  const databaseName = `backroom_soak_${new Date().toISOString().replace(/[-:T.Z]/g, '').slice(0, 14)}`
  await admin(serverUrl, `create database "${databaseName}"`)
  const databaseUrl = withDatabase(serverUrl, databaseName)
  await migrate({ connectionString: databaseUrl })
  const db = connect({ connectionString: databaseUrl, max: 1 })
  const { key } = await createApiKey(db.kysely, { storeId: null, label: 'soak' }).finally(() => db.close())

  const logDir = path.join(tmpdir(), databaseName)
  mkdirSync(logDir, { recursive: true })
  const port = await freePort()
  const env: NodeJS.ProcessEnv = { ...process.env, ...extraEnv, DATABASE_URL: databaseUrl, PORT: String(port), LOG_LEVEL: 'info' }
  // In-process rate limiting, no cron route: the soak measures the queue, not Redis.
  delete env.REDIS_URL
  delete env.CRON_SECRET
  delete env.BACKROOM_ADMIN_KEY
  const start = (name: string, entry: string) => {
    const fd = openSync(path.join(logDir, `${name}.log`), 'a')
    try {
      return spawnService({ name, entry: path.join(root, entry), root, env, output: fd })
    } finally {
      closeSync(fd)
    }
  }
  const services = [
    start('api', 'apps/api/src/server.ts'),
    ...Array.from({ length: SOAK_WORKERS }, (_, i) => start(`worker-${i + 1}`, 'apps/worker/src/main.ts')),
  ]
  const origin = `http://127.0.0.1:${port}`
  const system: SoakSystem = {
    databaseUrl,
    databaseName,
    origin,
    key,
    services,
    logDir,
    async stop() {
      for (const s of services) if (s.running) s.child.kill('SIGTERM')
      const codes = await Promise.all(services.map((s) => s.exited))
      return Object.fromEntries(services.map((s, i) => [s.name, codes[i] ?? -1]))
    },
    async dispose(keep) {
      for (const s of services) if (s.running) s.child.kill('SIGKILL')
      await Promise.all(services.map((s) => s.exited))
      if (keep) return
      await admin(serverUrl, `drop database if exists "${databaseName}" with (force)`)
      rmSync(logDir, { recursive: true, force: true })
    },
  }
  try {
    await waitReady(system)
  } catch (error) {
    await system.dispose(true)
    throw error
  }
  return system
}

/** Polls /readyz until the API answers 200; fails when a service exits first or after 90 s. */
async function waitReady(system: SoakSystem): Promise<void> {
  const deadline = Date.now() + 90_000
  for (;;) {
    const ready = await fetch(`${system.origin}/readyz`).then((r) => r.ok, () => false)
    if (ready) return
    const dead = system.services.find((s) => !s.running)
    if (dead || Date.now() > deadline) {
      const name = dead?.name ?? 'api'
      const tail = readFileSync(path.join(system.logDir, `${name}.log`), 'utf8').trim().split('\n').slice(-10).join('\n')
      throw new Error(`${name} ${dead ? 'exited' : 'not ready within 90 s'}; its last log lines:\n${tail}`)
    }
    await new Promise((r) => setTimeout(r, 200))
  }
}
