import type { Db } from '@backroom/queue-core'

/** The outcome of {@link withInstallLock}: the work's value, or `acquired: false` when another run holds the lock. */
export type LockedRun<T> = { readonly acquired: true; readonly value: T } | { readonly acquired: false }

/**
 * Runs `work` while holding a session advisory lock on `key`, or returns
 * `{ acquired: false }` at once when another session holds it.
 *
 * Why a session lock on a dedicated connection and not a row lock: the
 * installation row exists only after the archive is verified, so there is
 * nothing to lock before; and a transaction held open across downloads
 * would trip the pool's idle_in_transaction_session_timeout (60 s). The lock
 * dies with its connection, so a crashed worker never leaves it behind. It
 * needs a direct (session) connection, not a transaction-mode pooler, like
 * the queue's migrations and leader lock. Costs one pooled connection per
 * running install.
 */
export async function withInstallLock<T>(pool: Db['pool'], key: string, work: () => Promise<T>): Promise<LockedRun<T>> {
  const client = await pool.connect()
  let acquired: boolean
  try {
    const res = await client.query<{ ok: boolean }>('select pg_try_advisory_lock(hashtextextended($1, 0)) as ok', [key])
    acquired = res.rows[0]?.ok === true
  } catch (err) {
    client.release(asError(err))
    throw err
  }
  if (!acquired) {
    client.release()
    return { acquired: false }
  }
  try {
    return { acquired: true, value: await work() }
  } finally {
    // A connection whose unlock failed may still hold the lock: destroy it rather than pool it.
    await client.query('select pg_advisory_unlock(hashtextextended($1, 0))', [key]).then(
      () => client.release(),
      (err: unknown) => client.release(asError(err)),
    )
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err))
}
