import pg from 'pg'

/**
 * The server benchmarks run against, in order: BENCH_DATABASE_URL,
 * TEST_DATABASE_URL (set in CI), DATABASE_URL, the local default. The bench
 * only uses its database to create and drop scratch databases on that server.
 */
export function serverUrl(): string {
  return (
    process.env.BENCH_DATABASE_URL ||
    process.env.TEST_DATABASE_URL ||
    process.env.DATABASE_URL ||
    'postgres://postgres@127.0.0.1:5432/postgres'
  )
}

/** The same server, another database. */
export function withDatabase(url: string, name: string): string {
  const u = new URL(url)
  u.pathname = `/${name}`
  return u.toString()
}

/**
 * Runs one statement on the server through `url`'s database; when that database
 * does not exist (e.g. a TEST_DATABASE_URL naming a database nobody created),
 * through the maintenance database `postgres` instead.
 */
export async function admin(url: string, text: string): Promise<void> {
  try {
    await adminOn(url, text)
  } catch (error) {
    if ((error as { code?: string }).code !== '3D000') throw error
    await adminOn(withDatabase(url, 'postgres'), text)
  }
}

async function adminOn(url: string, text: string): Promise<void> {
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  try {
    await c.query(text)
  } finally {
    await c.end()
  }
}

/** Scratch databases created by this process and not dropped yet. */
const live = new Set<string>()

/** A fresh, empty database for one system's run; returns its URL and a dropper. */
export async function freshDatabase(prefix: string): Promise<{ url: string; drop(): Promise<void> }> {
  const server = serverUrl()
  const name = `bench_${prefix.replace(/[^a-z0-9]/gi, '_')}_${process.pid}_${Date.now().toString(36)}`
  await admin(server, `create database "${name}"`)
  live.add(name)
  return {
    url: withDatabase(server, name),
    async drop() {
      await admin(server, `drop database if exists "${name}" with (force)`)
      live.delete(name)
    },
  }
}

/** Drops every scratch database this process still holds (on an interrupted run). */
export async function dropLiveDatabases(): Promise<void> {
  for (const name of [...live]) {
    await admin(serverUrl(), `drop database if exists "${name}" with (force)`).catch(() => {})
    live.delete(name)
  }
}

/** The settings serverSettings() reports. */
const REPORTED_SETTINGS = ['server_version', 'fsync', 'synchronous_commit', 'shared_buffers', 'max_connections', 'full_page_writes']

/**
 * Server settings that change the numbers; printed with every result. Values
 * as SHOW prints them, with units (`shared_buffers` = `128MB`, not pages).
 * `url` may name a database that does not exist (see admin()).
 */
export async function serverSettings(url: string): Promise<Record<string, string>> {
  const read = async (u: string) => {
    const c = new pg.Client({ connectionString: u })
    await c.connect()
    try {
      const { rows } = await c.query<{ name: string; setting: string }>(
        `select name, current_setting(name) as setting from unnest($1::text[]) as name`,
        [REPORTED_SETTINGS],
      )
      return Object.fromEntries(rows.map((r) => [r.name, r.setting]))
    } finally {
      await c.end()
    }
  }
  try {
    return await read(url)
  } catch (error) {
    if ((error as { code?: string }).code !== '3D000') throw error
    return read(withDatabase(url, 'postgres'))
  }
}
