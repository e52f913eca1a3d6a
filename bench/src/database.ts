import pg from 'pg'

/** The server benchmarks run against: BENCH_DATABASE_URL, else DATABASE_URL, else the local default. */
export function serverUrl(): string {
  return process.env.BENCH_DATABASE_URL ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
}

/** The same server, another database. */
export function withDatabase(url: string, name: string): string {
  const u = new URL(url)
  u.pathname = `/${name}`
  return u.toString()
}

/** Runs one statement on the server's maintenance database. */
export async function admin(url: string, text: string): Promise<void> {
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  try {
    await c.query(text)
  } finally {
    await c.end()
  }
}

/** A fresh, empty database for one system's run; returns its URL and a dropper. */
export async function freshDatabase(prefix: string): Promise<{ url: string; drop(): Promise<void> }> {
  const server = serverUrl()
  const name = `bench_${prefix}_${Date.now().toString(36)}`
  await admin(server, `create database "${name}"`)
  return {
    url: withDatabase(server, name),
    drop: () => admin(server, `drop database if exists "${name}" with (force)`),
  }
}

/** Server settings that change the numbers; printed with every result. */
export async function serverSettings(url: string): Promise<Record<string, string>> {
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  try {
    const { rows } = await c.query<{ name: string; setting: string }>(
      `select name, setting from pg_settings where name in
        ('server_version', 'fsync', 'synchronous_commit', 'shared_buffers', 'max_connections', 'full_page_writes')`,
    )
    return Object.fromEntries(rows.map((r) => [r.name, r.setting]))
  } finally {
    await c.end()
  }
}
