import type { Logger } from 'pino'
import type pg from 'pg'
import { dedicatedClient } from '../db/connect.ts'
import { releaseLeadership, tryLeadership } from '../db/leader.ts'

/**
 * How often a follower tries to become leader. The leader checks its own
 * connection four times less often: a broken connection raises an error
 * event at once, and TCP keepalives catch a silent one.
 */
export const DEFAULT_ELECTION_INTERVAL_MS = 15_000

/** Leader election for one process. */
export interface Leader {
  start(): Promise<void>
  readonly isLeader: boolean
  stop(): Promise<void>
}

/**
 * Elects one leader among all worker processes with a session advisory lock
 * held on a dedicated connection. If the leader dies, its connection closes,
 * PostgreSQL releases the lock and the next follower to try takes over. The
 * lock is never held through a pooler: give this a direct connection string.
 */
export function createLeader(args: {
  connectionString: string
  log: Logger
  onElected(): void
  onDeposed(): Promise<void> | void
  intervalMs?: number
}): Leader {
  const log = args.log.child({ component: 'leader' })
  let client: pg.Client | null = null
  let leader = false
  let stopped = false
  let timer: NodeJS.Timeout | null = null
  let current: Promise<void> = Promise.resolve()

  const depose = async (why: 'lost' | 'released') => {
    if (!leader) return
    leader = false
    if (why === 'lost') log.warn('leadership lost')
    else log.info('leadership released')
    await args.onDeposed()
  }

  const closeClient = async () => {
    const c = client
    client = null
    await c?.end().catch(() => {})
  }

  const attempt = async () => {
    try {
      if (!client) {
        const c = dedicatedClient(args.connectionString, 'backroom-leader')
        const lost = () => {
          if (client !== c) return
          client = null
          void depose('lost')
        }
        c.on('error', lost)
        c.on('end', lost)
        await c.connect()
        client = c
      }
      if (leader) {
        // Still connected means the lock is still ours.
        await client.query('select 1')
        return
      }
      if (await tryLeadership(client)) {
        leader = true
        log.info('elected leader')
        args.onElected()
      }
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'leader election pass failed')
      await depose('lost')
      await closeClient()
    }
  }

  const loop = () => {
    timer = null
    current = attempt().then(() => {
      if (stopped) return
      const base = (args.intervalMs ?? DEFAULT_ELECTION_INTERVAL_MS) * (leader ? 4 : 1)
      timer = setTimeout(loop, base * (0.8 + Math.random() * 0.4))
      timer.unref()
    })
  }

  return {
    async start() {
      loop()
      await current
    },
    get isLeader() {
      return leader
    },
    async stop() {
      stopped = true
      if (timer) clearTimeout(timer)
      await current
      const was = leader
      await depose('released')
      if (was && client) await releaseLeadership(client).catch(() => {})
      await closeClient()
    },
  }
}
