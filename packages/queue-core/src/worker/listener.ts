import type { Logger } from 'pino'
import type pg from 'pg'
import { dedicatedClient, onServerSilence } from '../db/connect.ts'
import { NOTIFY_CHANNEL } from '../config.ts'

/** A dedicated LISTEN connection that reconnects by itself. */
export interface Listener {
  start(): Promise<void>
  stop(): Promise<void>
}

/**
 * Listens for enqueue notifications and calls `onWake` for each. After every
 * reconnect it also calls `onWake('')` and `onWake('scheduled')`, since
 * notifications of either kind sent while it was disconnected are lost.
 * Correctness never depends on it: the producer also polls.
 *
 * A reset connection errors at once and is replaced. A silently dead one (a
 * network or server gone without a FIN or RST) says nothing while it only
 * listens, so the listener checks it with `select 1` whenever another
 * connection of this process to the same server got no answer in time (a
 * claim or a completion past its timeout); the check costs nothing while
 * the database answers. Its connect and statements are bounded
 * (dedicatedClient), so no attempt hangs, and stop() never waits on a dead
 * server.
 */
export function createListener(args: {
  connectionString: string
  /** Called with each notification's payload ('' for pending work, 'scheduled' for future work), and as described above. */
  onWake: (payload: string) => void
  log: Logger
  reconnectMs?: number
}): Listener {
  const log = args.log.child({ component: 'listener' })
  let client: pg.Client | null = null
  let stopped = false
  let retry: NodeJS.Timeout | null = null
  let lost = false
  let stopWatching: (() => void) | null = null

  const connect = async (): Promise<void> => {
    const c = dedicatedClient(args.connectionString, 'backroom-listener')
    let heardAt = 0
    let checking = false
    c.on('notification', (n) => {
      heardAt = Date.now()
      args.onWake(n.payload ?? '')
    })
    c.on('error', (err) => drop(c, err.message))
    c.on('end', () => drop(c, 'connection ended'))
    try {
      await c.connect()
      await c.query(`listen ${NOTIFY_CHANNEL}`)
    } catch (err) {
      await c.end().catch(() => {})
      throw err
    }
    if (stopped) {
      await c.end().catch(() => {})
      return
    }
    heardAt = Date.now()
    client = c
    stopWatching?.()
    stopWatching = onServerSilence(c, (since) => {
      if (client !== c || checking || heardAt >= since) return
      checking = true
      // A check with no answer in time closes the connection ('end' above), and a new one replaces it.
      c.query('select 1')
        .then(() => {
          heardAt = Date.now()
        })
        .catch(() => {})
        .finally(() => {
          checking = false
        })
    })
    const reconnected = lost
    lost = false
    if (reconnected) log.info('listener reconnected')
    args.onWake('')
    if (reconnected) args.onWake('scheduled')
  }

  const drop = (c: pg.Client, why: string) => {
    if (client !== c) return
    log.warn({ err: why }, 'listener connection lost')
    client = null
    lost = true
    stopWatching?.()
    stopWatching = null
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
      stopWatching?.()
      stopWatching = null
      const c = client
      client = null
      await c?.end().catch(() => {})
    },
  }
}
