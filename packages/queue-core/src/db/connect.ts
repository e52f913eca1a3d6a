import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import type { Database } from './database.ts'
import { CLAIM_SETTINGS } from './claim.ts'
import { withPreparedStatements } from './prepared.ts'
import {
  DB_CLOSE_TIMEOUT_MS,
  DB_CONNECT_TIMEOUT_MS,
  DB_KEEPALIVE_IDLE_MS,
  DB_QUERY_TIMEOUT_MARGIN_MS,
  DB_SERVER_KEEPALIVES,
  DB_SESSION_STATEMENT_TIMEOUT_MS,
} from '../config.ts'

/** statement_timeout of {@link connect}'s pools unless the caller sets one. */
const DEFAULT_STATEMENT_TIMEOUT_MS = 60_000

/** Server-side keepalives as session settings (see DB_SERVER_KEEPALIVES). */
const SERVER_KEEPALIVES = [
  `-c tcp_keepalives_idle=${DB_SERVER_KEEPALIVES.idleS}`,
  `-c tcp_keepalives_interval=${DB_SERVER_KEEPALIVES.intervalS}`,
  `-c tcp_keepalives_count=${DB_SERVER_KEEPALIVES.count}`,
].join(' ')

/** What pg 8 rejects a statement with when its query_timeout passes with no answer. */
const QUERY_TIMEOUT_MESSAGE = 'Query read timeout'

/** Options for {@link connect}. */
export interface ConnectOptions {
  readonly connectionString: string
  /** Pool size; `DB_POOL_MAX`. */
  readonly max?: number
  /** Connections kept open when idle; `DB_POOL_MIN`. */
  readonly min?: number
  /**
   * How long to wait for a free connection before failing with a clear error
   * (default 10 s); also how long opening a new connection may take.
   */
  readonly acquireTimeoutMs?: number
  /**
   * Per-statement limit on our own connections (a runaway query must not hold
   * locks; default 60 s). A statement with no answer at all for this long plus
   * DB_QUERY_TIMEOUT_MARGIN_MS fails on the client's side and its connection is
   * discarded: the network or the server is gone.
   */
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
    Client: GuardedClient,
    connectionString: options.connectionString,
    max: options.max ?? 10,
    min: options.min ?? 0,
    // pg-pool applies this both to waiting for a free connection and to opening a new one.
    connectionTimeoutMillis: options.acquireTimeoutMs ?? 10_000,
    // Keep idle connections well past the slowest idle-time tick (60 s): each
    // reconnect costs a transaction, which was a fifth of an idle worker's cost.
    idleTimeoutMillis: 5 * 60_000,
    application_name: options.applicationName ?? 'backroom',
    ...deadNetworkSettings(options.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS),
    // A connection left idle inside a transaction holds back vacuum on the hot table.
    idle_in_transaction_session_timeout: 60_000,
    // Queue statements are short; JIT compiling them costs more than it saves.
    options: `-c jit=off ${SERVER_KEEPALIVES}`,
  })
  return wrapPool(pool)
}

/**
 * What every connection of ours carries against a network that dies without
 * closing anything: TCP keepalives (an idle connection to a vanished server
 * errors in about 20 s), the statement limit, and a client-side query timeout
 * a little above it (a statement that gets no answer at all fails instead of
 * waiting forever; see {@link GuardedClient}).
 */
function deadNetworkSettings(statementTimeoutMs: number) {
  return {
    keepAlive: true,
    keepAliveInitialDelayMillis: DB_KEEPALIVE_IDLE_MS,
    statement_timeout: statementTimeoutMs,
    // 0 turns the statement limit off; then nothing bounds a statement on our side either.
    query_timeout: statementTimeoutMs > 0 ? statementTimeoutMs + DB_QUERY_TIMEOUT_MARGIN_MS : undefined,
  } satisfies pg.ClientConfig
}

/** Kysely over a pool, and one close() that ends both whether or not Kysely ever ran a query. */
function wrapPool(pool: pg.Pool): Db {
  // An idle client that loses its server raises here; without a listener it crashes the process.
  pool.on('error', () => {})
  const stopEvicting = evictSilentIdleClients(pool)
  const kysely = new Kysely<Database>({ dialect: new PostgresDialect({ pool: withPreparedStatements(pool) }) })
  let closed = false
  return {
    pool,
    kysely,
    async close() {
      if (closed) return
      closed = true
      stopEvicting()
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
 * A dedicated session connection (LISTEN) that notices a vanished peer in
 * seconds, not hours: TCP keepalives on our side, and on the server's side
 * too, so a session whose host disappears without closing its socket ends
 * (with its locks) in about 25 s.
 * Opening it gives up after DB_CONNECT_TIMEOUT_MS, a statement on it after
 * DB_SESSION_STATEMENT_TIMEOUT_MS (plus the margin on the client's side),
 * and end() never waits on a dead server.
 */
export function dedicatedClient(connectionString: string, applicationName: string): pg.Client {
  return new GuardedClient(dedicatedClientConfig(connectionString, applicationName))
}

/**
 * The settings of {@link dedicatedClient} as plain data (no functions), for
 * a client made where this module is not loaded: the watchdog thread.
 */
export function dedicatedClientConfig(connectionString: string, applicationName: string): pg.ClientConfig {
  return {
    connectionString,
    application_name: applicationName,
    connectionTimeoutMillis: DB_CONNECT_TIMEOUT_MS,
    ...deadNetworkSettings(DB_SESSION_STATEMENT_TIMEOUT_MS),
    options: `-c jit=off ${SERVER_KEEPALIVES}`,
  }
}

/**
 * A small pool whose sessions carry the claim's planner and commit settings
 * (CLAIM_SETTINGS), for `claimBatchOnSession`. Only claims run on it: with
 * synchronous_commit off, nothing that must be durable may use it. Claims
 * take milliseconds, so its statements are limited to
 * DB_SESSION_STATEMENT_TIMEOUT_MS: a producer waits at most that (plus the
 * margin) on a connection the network lost before it claims on a new one.
 */
export function connectClaimSession(connectionString: string, applicationName = 'backroom-claim'): Db {
  const pool = new pg.Pool({
    Client: GuardedClient,
    connectionString,
    max: 2,
    application_name: applicationName,
    connectionTimeoutMillis: DB_CONNECT_TIMEOUT_MS,
    idleTimeoutMillis: 5 * 60_000,
    ...deadNetworkSettings(DB_SESSION_STATEMENT_TIMEOUT_MS),
    options: [...CLAIM_SETTINGS.map(([name, value]) => `-c ${name}=${value}`), SERVER_KEEPALIVES].join(' '),
  })
  return wrapPool(pool)
}

/**
 * True when `error` (or an error in its `cause` chain) says the database
 * could not be reached or stopped answering, rather than that a statement
 * was wrong: a refused or reset connection, a connect or acquire timeout, a
 * statement with no answer within its client-side timeout, a connection that
 * closed under it, or the server saying it is shutting down, starting up or
 * full. Callers answer such errors with "try again later" (HTTP 503).
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string' && (NETWORK_ERROR_CODES.has(code) || UNAVAILABLE_SQLSTATES.test(code))) return true
    if (UNAVAILABLE_MESSAGES.some((m) => e.message.startsWith(m))) return true
  }
  return false
}

/** Node's socket errors on the way to the server. */
const NETWORK_ERROR_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN'])

/**
 * SQLSTATEs: class 08 (connection exception), 57P01-57P03 (admin or crash
 * shutdown, cannot connect now), 53300 (too many connections).
 */
const UNAVAILABLE_SQLSTATES = /^(08[0-9A-Z]{3}|57P0[123]|53300)$/

/** pg 8 and pg-pool 3 raise these as plain Errors, with no code. */
const UNAVAILABLE_MESSAGES = [
  QUERY_TIMEOUT_MESSAGE,
  // pg-pool: no connection became free within the acquire timeout.
  'timeout exceeded when trying to connect',
  // pg: opening a connection took longer than the connect timeout.
  'timeout expired',
  // The connection closed under a statement ("... unexpectedly"), or while
  // opening ("... due to connection timeout", pg-pool), or was found closed.
  'Connection terminated',
  'Client has encountered a connection error and is not queryable',
  'Client was closed and is not queryable',
]

/** When a statement or a connect of this process started that got no answer, per server (host:port). */
type SilenceWatcher = (since: number) => void
const silenceWatchers = new Map<string, Set<SilenceWatcher>>()

function reportSilence(server: string, since: number): void {
  for (const watcher of [...(silenceWatchers.get(server) ?? [])]) watcher(since)
}

function watchSilence(server: string, watcher: SilenceWatcher): () => void {
  let watchers = silenceWatchers.get(server)
  if (!watchers) silenceWatchers.set(server, (watchers = new Set()))
  watchers.add(watcher)
  return () => {
    watchers.delete(watcher)
    if (watchers.size === 0) silenceWatchers.delete(server)
  }
}

/**
 * Calls `watcher` whenever another connection of this process to the same
 * server as `client` got no answer in time (a statement past its query
 * timeout, or a connect past its connect timeout), with the time the silent
 * request started. A connection that has not heard from the server since
 * then may be just as dead without knowing it: an idle one sends nothing,
 * so nothing tells it. Returns a function that stops watching.
 */
export function onServerSilence(client: pg.Client, watcher: (since: number) => void): () => void {
  return watchSilence(serverOf(client), watcher)
}

const serverOf = (client: pg.Client): string => `${client.host}:${client.port}`

/**
 * When one connection to a server goes silent, the pool's idle connections
 * that have not heard from it since are closed, so the pool opens fresh ones
 * instead of finding each dead one by a full query timeout in turn (taken
 * from the idle list one after another, ten dead connections cost ten
 * timeouts). Closing an idle one makes pg-pool drop it as it does any idle
 * connection that errors.
 */
function evictSilentIdleClients(pool: pg.Pool): () => void {
  const idle = new Set<pg.Client>()
  let unwatch: (() => void) | null = null
  pool.on('connect', (client) => {
    unwatch ??= watchSilence(serverOf(client), (since) => {
      for (const c of idle) {
        if (c instanceof GuardedClient && c.lastHeardAt >= since) continue
        idle.delete(c)
        c.connection.stream.destroy()
      }
    })
  })
  pool.on('acquire', (client) => idle.delete(client))
  pool.on('release', (_err, client) => idle.add(client))
  pool.on('remove', (client) => idle.delete(client))
  return () => unwatch?.()
}

type ConnectCallback = ((err: Error) => void) | ((err: null, c: pg.Client) => void)

/**
 * pg's Client, made safe on a network that fails:
 *
 * - A statement past its query_timeout is rejected by pg, which then keeps
 *   the connection with that statement still outstanding, and a pool would
 *   hand it out again (Kysely releases connections without an error). Here
 *   the connection is closed at once, so it is never reused, and the other
 *   connections to the same server hear of the silence.
 * - A socket error while the connection is checked out of a pool (a reset
 *   under a running statement) is emitted on the client after it rejected
 *   that statement; with no listener it would crash the process (pg-pool
 *   listens only while the client is idle). It is absorbed here: the
 *   statement's caller has the error, and the pool drops the broken client
 *   when it comes back.
 * - end() waits DB_CLOSE_TIMEOUT_MS for the server's goodbye, then destroys
 *   the socket: a dead server never says goodbye, and stop() must finish.
 */
class GuardedClient extends pg.Client {
  /** When the server last answered on this connection (ms since the epoch; 0 before connecting). */
  lastHeardAt = 0
  readonly #connectTimeoutMs: number
  #closing: Promise<void> | null = null

  constructor(config: pg.ClientConfig = {}) {
    super(config)
    this.#connectTimeoutMs = config.connectionTimeoutMillis ?? 0
    this.on('error', () => {})
  }

  override connect(): Promise<pg.Client>
  override connect(callback: ConnectCallback): void
  override connect(callback?: ConnectCallback): Promise<pg.Client> | void {
    const started = Date.now()
    // pg abandons the connect at the same moment; this only tells the other connections.
    const timer = this.#connectTimeoutMs > 0 ? setTimeout(() => reportSilence(serverOf(this), started), this.#connectTimeoutMs) : null
    timer?.unref()
    const settle = (err: unknown) => {
      if (timer) clearTimeout(timer)
      if (!err) this.lastHeardAt = Date.now()
    }
    if (callback) {
      const done = callback as (err: Error) => void
      super.connect((err: Error) => {
        settle(err)
        done(err)
      })
      return
    }
    return super.connect().then(
      (client) => {
        settle(null)
        return client
      },
      (err: unknown) => {
        settle(err)
        throw err
      },
    )
  }

  // One signature for pg's many overloads: the arguments pass through untouched.
  override query(...args: any[]): any {
    const started = Date.now()
    const settle = (err: unknown) => {
      if (err instanceof Error && err.message === QUERY_TIMEOUT_MESSAGE) {
        void this.end()
        reportSilence(serverOf(this), started)
      } else if (!err || typeof (err as { severity?: unknown }).severity === 'string') {
        // A result, or an error the server sent: either way it answered.
        this.lastHeardAt = Date.now()
      }
    }
    const send = super.query as (...a: unknown[]) => unknown
    const last = args.length - 1
    if (typeof args[last] === 'function') {
      const callback = args[last] as (err: unknown, result: unknown) => void
      args[last] = (err: unknown, result: unknown) => {
        settle(err)
        callback(err, result)
      }
      return send.apply(this, args)
    }
    const result = send.apply(this, args)
    if (result instanceof Promise) result.then(() => settle(null), settle)
    return result
  }

  override end(): Promise<void>
  override end(callback: (err: Error) => void): void
  override end(callback?: (err: Error) => void): Promise<void> | void {
    this.#closing ??= this.#close()
    if (!callback) return this.#closing
    // pg calls back with no error once the connection has ended.
    void this.#closing.then(() => (callback as () => void)())
  }

  async #close(): Promise<void> {
    const timer = setTimeout(() => this.connection.stream.destroy(), DB_CLOSE_TIMEOUT_MS)
    timer.unref()
    try {
      await super.end()
    } finally {
      clearTimeout(timer)
    }
  }
}
