import pg from 'pg'
import { startEmbeddedPostgres } from '../dev/embedded-postgres.ts'

/** A PostgreSQL server for a test run, and where it came from. */
export interface TestServer {
  readonly url: string
  readonly source: 'env' | 'testcontainers' | 'embedded'
  stop(): Promise<void>
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms)
        timer.unref()
      }),
    ])
  } finally {
    if (timer) clearTimeout(timer)
  }
}

/**
 * Finds a PostgreSQL server for tests, in order: `TEST_DATABASE_URL`; a
 * testcontainers container when a Docker daemon answers; an embedded
 * PostgreSQL. So the suite runs on a laptop with only Node.
 */
export async function startTestServer(): Promise<TestServer> {
  const fromEnv = process.env.TEST_DATABASE_URL
  if (fromEnv) return { url: fromEnv, source: 'env', stop: async () => {} }
  if (process.env.TEST_DB_SKIP_DOCKER !== '1') {
    try {
      // Optional dependency, imported by name at run time only: most machines have no daemon.
      const modName = 'testcontainers'
      const tc = (await import(modName)) as { getContainerRuntimeClient(): Promise<unknown> }
      await withTimeout(tc.getContainerRuntimeClient(), 5_000, 'docker probe')
      const pgModName = '@testcontainers/postgresql'
      const { PostgreSqlContainer } = (await import(pgModName)) as {
        PostgreSqlContainer: new (image: string) => { start(): Promise<{ getConnectionUri(): string; stop(): Promise<unknown> }> }
      }
      const container = await new PostgreSqlContainer('postgres:15-alpine').start()
      return { url: container.getConnectionUri(), source: 'testcontainers', stop: async () => void (await container.stop()) }
    } catch {
      // No container runtime (or testcontainers not installed): fall through to embedded.
    }
  }
  const embedded = await startEmbeddedPostgres()
  return { url: embedded.url, source: 'embedded', stop: () => embedded.stop() }
}

/** The same server URL pointing at another database. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url)
  u.pathname = `/${database}`
  return u.toString()
}

/** Runs one admin statement on the server's maintenance connection. */
export async function adminQuery(serverUrl: string, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: serverUrl })
  await client.connect()
  try {
    await client.query(text)
  } finally {
    await client.end()
  }
}

/** A unique, valid database name with a prefix. */
export function uniqueDatabaseName(prefix: string): string {
  return `${prefix}_${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`
}

/** Creates a database cloned from `template` (graphile-worker's template trick) and returns its URL. */
export async function createDatabaseFromTemplate(serverUrl: string, template: string, prefix = 'backroom_t'): Promise<{ url: string; name: string }> {
  const name = uniqueDatabaseName(prefix)
  await adminQuery(serverUrl, `create database "${name}" template "${template}"`)
  return { url: withDatabase(serverUrl, name), name }
}

/** Drops a database, disconnecting whoever still uses it. */
export async function dropDatabase(serverUrl: string, name: string): Promise<void> {
  await adminQuery(serverUrl, `drop database if exists "${name}" with (force)`)
}
