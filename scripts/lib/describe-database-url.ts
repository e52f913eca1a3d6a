/**
 * Where a connection string points, without user or password: safe to print.
 *
 * @example
 * describeDatabaseUrl('postgres://app:s3cret@db.internal:5432/backroom') // 'PostgreSQL at db.internal:5432/backroom'
 */
export function describeDatabaseUrl(url: string): string {
  try {
    const u = new URL(url)
    const host = u.hostname === '' ? 'a local socket' : `${u.hostname}${u.port ? `:${u.port}` : ''}`
    return `PostgreSQL at ${host}${u.pathname === '/' ? '' : u.pathname}`
  } catch {
    return 'PostgreSQL from DATABASE_URL'
  }
}

/** `text` with every occurrence of the connection string replaced, for printing error messages. */
export function redactDatabaseUrl(text: string, url: string | undefined): string {
  return url ? text.split(url).join('[DATABASE_URL]') : text
}
