import type { Logger } from 'pino'
import type pg from 'pg'
import { dedicatedClient } from '../db/connect.ts'
import { NOTIFY_CHANNEL } from '../config.ts'

/** A dedicated LISTEN connection that reconnects by itself. */
export interface Listener {
  start(): Promise<void>
  stop(): Promise<void>
}

/**
 * Listens for enqueue notifications and calls `onWake` for each, and once
 * after every (re)connect, since notifications sent while disconnected are
 * lost. Correctness never depends on it: the producer also polls.
 */
export function createListener(args: {
  connectionString: string
  /** Called with each notification's payload ('' for pending work, 'scheduled' for future work), and with '' after each (re)connect. */
  onWake: (payload: string) => void
  log: Logger
  reconnectMs?: number
}): Listener {
  const log = args.log.child({ component: 'listener' })
  let client: pg.Client | null = null
  let stopped = false
  let retry: NodeJS.Timeout | null = null

  const connect = async (): Promise<void> => {
    const c = dedicatedClient(args.connectionString, 'backroom-listener')
    c.on('notification', (n) => args.onWake(n.payload ?? ''))
    c.on('error', (err) => {
      log.warn({ err: err.message }, 'listener connection lost')
      drop(c)
    })
    c.on('end', () => drop(c))
    try {
      await c.connect()
      await c.query(`listen ${NOTIFY_CHANNEL}`)
    } catch (err) {
      c.end().catch(() => {})
      throw err
    }
    if (stopped) {
      await c.end().catch(() => {})
      return
    }
    client = c
    args.onWake('')
  }

  const drop = (c: pg.Client) => {
    if (client !== c) return
    client = null
    c.end().catch(() => {})
    scheduleReconnect()
  }

  const scheduleReconnect = () => {
    if (stopped || retry) return
    retry = setTimeout(() => {
      retry = null
      connect().catch((err: unknown) => {
        log.warn({ err: (err as Error).message }, 'listener reconnect failed')
        scheduleReconnect()
      })
    }, args.reconnectMs ?? 1_000)
    retry.unref()
  }

  return {
    async start() {
      await connect()
    },
    async stop() {
      stopped = true
      if (retry) clearTimeout(retry)
      const c = client
      client = null
      await c?.end().catch(() => {})
    },
  }
}
