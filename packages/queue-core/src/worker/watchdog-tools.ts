/**
 * What the watchdog thread needs only once the main loop is blocked: the
 * logger, a connection of its own and the heartbeat statement. The thread's
 * watch loop (watchdog-thread.ts) imports this module on first need, while
 * its own loop runs, so a healthy pool's thread holds none of it.
 */
import type { Kysely } from 'kysely'
import type pg from 'pg'
import { pino, type Logger } from 'pino'
import { extendLeases } from '../db/claim.ts'
import { dedicatedClient, fromPgClient } from '../db/connect.ts'
import type { Database } from '../db/database.ts'
import { writeErrorFields } from './retry-outcome-write.ts'
import type { WatchdogThreadData, WatchedFence } from './watchdog.ts'

/** The thread's tools, made by {@link createWatchdogTools}. */
export interface WatchdogTools {
  readonly log: Logger
  /** Extends the leases of `fences` on the thread's own connection (opened on first use). */
  heartbeat(fences: ReadonlyArray<WatchedFence>): Promise<void>
  /** Closes the thread's connection, if open. */
  close(): Promise<void>
}

/**
 * Makes the watchdog thread's tools. The logger writes straight to file
 * descriptor 1, synchronously: a worker thread's process.stdout is relayed
 * through the main thread, whose loop is the one that is blocked.
 */
export function createWatchdogTools(data: WatchdogThreadData): WatchdogTools {
  const log = pino({ level: data.logLevel, base: data.logBindings }, pino.destination({ dest: 1, sync: true })).child({ component: 'watchdog' })
  let session: { client: pg.Client; db: Kysely<Database> } | null = null

  const connection = async (): Promise<Kysely<Database>> => {
    if (session) return session.db
    const client = dedicatedClient(data.connectionString, 'backroom-watchdog')
    await client.connect()
    session = { client, db: fromPgClient(client) }
    return session.db
  }
  const close = async (): Promise<void> => {
    const closing = session
    session = null
    await closing?.client.end().catch(() => {})
  }

  return {
    log,
    async heartbeat(fences) {
      try {
        const kept = await extendLeases(await connection(), { fences, leaseMs: data.leaseMs })
        log.debug({ jobs: fences.length, kept: kept.length }, 'watchdog heartbeat')
      } catch (err) {
        // The main loop's heartbeat finds out about lost leases once it runs again; here only the connection matters.
        log.warn(writeErrorFields(err), 'watchdog heartbeat failed')
        await close()
      }
    },
    close,
  }
}
