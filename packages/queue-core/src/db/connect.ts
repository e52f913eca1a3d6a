import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import type { Database } from './database.ts'
import { CLAIM_SETTINGS } from './claim.ts'
import { withPreparedStatements } from './prepared.ts'

/** Options for {@link connect}. */
export interface ConnectOptions {
  readonly connectionString: string
  /** Pool size; `DB_POOL_MAX`. */
  readonly max?: number
  /** Connections kept open when idle; `DB_POOL_MIN`. */
  readonly min?: number
  /** How long to wait for a free connection before failing with a clear error. */
  readonly acquireTimeoutMs?: number
  /** Per-statement limit on our own connections (a runaway query must not hold locks). */
  readonly statementTimeoutMs?: number
  /** Name shown in pg_stat_activity. */
  readonly applicationName?: string
}

/** A pool and the Kysely instance on top of it. */
export interface Db {
  readonly pool: pg.Pool
  readonly kysely: Kysely<Database>
  /** Closes the pool (and Kysely with it). */
  close(): Promise<void>
}

/**
 * Opens a pg pool with the queue's session settings and a Kysely on top.
 *
 * @example
 * const db = connect({ connectionString: process.env.DATABASE_URL!, max: 5 })
 * await enqueue(db.kysely, { type: 'system.canary', storeId: 'store-1' })
 */
export function connect(options: ConnectOptions): Db {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.max ?? 10,
    min: options.min ?? 0,
    connectionTimeoutMillis: options.acquireTimeoutMs ?? 10_000,
    // Keep idle connections well past the slowest idle-time tick (60 s): each
    // reconnect costs a transaction, which was a fifth of an idle worker's cost.
    idleTimeoutMillis: 5 * 60_000,
    application_name: options.applicationName ?? 'backroom',
    statement_timeout: options.statementTimeoutMs ?? 60_000,
    // A connection left idle inside a transaction holds back vacuum on the hot table.
    idle_in_transaction_session_timeout: 60_000,
    // Queue statements are short; JIT compiling them costs more than it saves.
    options: '-c jit=off',
  })
  return wrapPool(pool)
}

/** Kysely over a pool, and one close() that ends both whether or not Kysely ever ran a query. */
function wrapPool(pool: pg.Pool): Db {
  // An idle client that loses its server raises here; without a listener it crashes the process.
  pool.on('error', () => {})
  const kysely = new Kysely<Database>({ dialect: new PostgresDialect({ pool: withPreparedStatements(pool) }) })
  let closed = false
  return {
    pool,
    kysely,
    async close() {
      if (closed) return
      closed = true
      await kysely.destroy()
      // Kysely ends the pool only if it ever ran a query; a pool used directly must still close.
      if (!pool.ended) await pool.end()
    },
  }
}

/**
 * Wraps a caller's own `pg` client (inside their transaction) as an executor,
 * so enqueue commits or rolls back with the caller's work.
 */
export function fromPgClient(client: pg.ClientBase): Kysely<Database> {
  return new Kysely<Database>({
    dialect: new PostgresDialect({
      pool: {
        // A wrapper, not the client: the caller's own release() must keep working.
        connect: async () => ({ query: client.query.bind(client), release: () => {} }),
        end: async () => {},
      } as unknown as pg.Pool,
    }),
  })
}

/**
 * A dedicated session connection (LISTEN, the leader lock) that notices a
 * vanished peer in seconds, not hours: TCP keepalives on our side, and on the
 * server's side too, so a leader whose host disappears without closing its
 * socket loses the advisory lock in about 30 s and a follower takes over.
 */
export function dedicatedClient(connectionString: string, applicationName: string): pg.Client {
  return new pg.Client({
    connectionString,
    application_name: applicationName,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    options: '-c jit=off -c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3',
  })
}

/**
 * A small pool whose sessions carry the claim's planner and commit settings
 * (CLAIM_SETTINGS), for `claimBatchOnSession`. Only claims run on it: with
 * synchronous_commit off, nothing that must be durable may use it.
 */
export function connectClaimSession(connectionString: string, applicationName = 'backroom-claim'): Db {
  const pool = new pg.Pool({
    connectionString,
    max: 2,
    application_name: applicationName,
    idleTimeoutMillis: 5 * 60_000,
    statement_timeout: 60_000,
    options: CLAIM_SETTINGS.map(([name, value]) => `-c ${name}=${value}`).join(' '),
  })
  return wrapPool(pool)
}
