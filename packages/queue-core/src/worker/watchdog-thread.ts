/**
 * The watchdog's thread (see createWatchdog in watchdog.ts): watches the
 * main loop's tick counter, heartbeats the held leases on a connection of
 * its own while the loop is blocked, and SIGKILLs the process once the
 * block outlasts every held job's timeout plus the abort grace.
 */
import { parentPort, workerData } from 'node:worker_threads'
import type { Kysely } from 'kysely'
import type pg from 'pg'
import { pino } from 'pino'
import { extendLeases } from '../db/claim.ts'
import { dedicatedClient, fromPgClient } from '../db/connect.ts'
import type { Database } from '../db/database.ts'
import { writeErrorFields } from './retry-outcome-write.ts'
import type { WatchdogMessage, WatchdogThreadData, WatchedFence } from './watchdog.ts'

const data = workerData as WatchdogThreadData
const port = parentPort
if (!port) throw new Error('watchdog-thread runs as a worker thread only')

// Straight to file descriptor 1, synchronously: a worker's process.stdout is
// relayed through the main thread, whose loop is the one that is blocked.
const log = pino({ level: data.logLevel, base: data.logBindings }, pino.destination({ dest: 1, sync: true })).child({ component: 'watchdog' })
const tick = new Int32Array(data.tick)
const timeoutsMs = new Map(data.timeoutsMs)

let fences: ReadonlyArray<WatchedFence> = []
let lastSeen = Atomics.load(tick, 0)
/** When (this thread's performance.now()) the main loop's counter was last seen moving. */
let lastMovedAt = performance.now()
let lastCheckAt = lastMovedAt
/** Set while the main loop is blocked: when the block began, and when the thread last heartbeated. */
let block: { since: number; lastBeatAt: number } | null = null
let session: { client: pg.Client; db: Kysely<Database> } | null = null
let beating = false

/** How long the main loop may stay blocked: the longest timeout of the jobs held (of the pool when none) plus the abort grace. */
const boundMs = (): number => {
  const held = fences.map((f) => timeoutsMs.get(f.type) ?? data.longestTimeoutMs)
  return (held.length > 0 ? Math.max(...held) : data.longestTimeoutMs) + data.abortGraceMs
}

const jobIds = (): string[] => fences.map((f) => f.id)

/** Opens the thread's connection on first need: a healthy pool never has one. */
async function connection(): Promise<Kysely<Database>> {
  if (session) return session.db
  const client = dedicatedClient(data.connectionString, 'backroom-watchdog')
  await client.connect()
  session = { client, db: fromPgClient(client) }
  return session.db
}

function closeConnection(): void {
  const closing = session
  session = null
  void closing?.client.end().catch(() => {})
}

async function beat(): Promise<void> {
  if (beating || fences.length === 0) return
  beating = true
  const sent = fences
  try {
    const kept = await extendLeases(await connection(), { fences: sent, leaseMs: data.leaseMs })
    log.debug({ jobs: sent.length, kept: kept.length }, 'watchdog heartbeat')
  } catch (err) {
    // The main loop's heartbeat finds out about lost leases once it runs again; here only the connection matters.
    log.warn(writeErrorFields(err), 'watchdog heartbeat failed')
    closeConnection()
  } finally {
    beating = false
  }
}

function check(): void {
  const now = performance.now()
  const seen = Atomics.load(tick, 0)
  // Our own timer late too: the whole process was paused (SIGSTOP, a
  // suspended host) or starved, not just the main loop. Count afresh.
  if (seen !== lastSeen || now - lastCheckAt > data.checkMs + data.lateMs) {
    lastSeen = seen
    lastMovedAt = now
  }
  lastCheckAt = now
  const lateMs = now - lastMovedAt
  if (lateMs <= data.lateMs) {
    if (block) {
      log.info({ blockedMs: Math.round(now - block.since) }, 'event loop running again')
      block = null
      closeConnection()
    }
    return
  }
  if (!block) {
    block = { since: lastMovedAt, lastBeatAt: Number.NEGATIVE_INFINITY }
    log.warn({ jobIds: jobIds(), lateMs: Math.round(lateMs) }, 'event loop blocked; watchdog keeping leases')
  }
  const bound = boundMs()
  if (lateMs > bound) {
    // No heartbeat from here on: the leases run out and the rescuer takes the jobs back.
    log.error({ jobIds: jobIds(), blockedMs: Math.round(lateMs), boundMs: bound }, 'event loop wedged; killing process')
    process.kill(process.pid, 'SIGKILL')
    return
  }
  if (now - block.lastBeatAt >= data.heartbeatMs) {
    block.lastBeatAt = now
    void beat()
  }
}

const timer = setInterval(check, data.checkMs)

port.on('message', (message: WatchdogMessage) => {
  if (message.kind === 'fences') {
    fences = message.fences
    return
  }
  clearInterval(timer)
  port.close()
  const closing = session
  session = null
  void (closing ? closing.client.end() : Promise.resolve()).catch(() => {})
})

port.postMessage({ kind: 'ready' })
