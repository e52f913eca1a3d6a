/**
 * The watchdog thread's watch loop (see createWatchdog in watchdog.ts),
 * as the text of a script the thread is started on (`eval: true`).
 *
 * Why text and not a module: a thread started on a TypeScript module needs
 * a TypeScript loader of its own (Node 20 does not hand the process's
 * `--import tsx` to a worker), which with the queue modules cost 30 MB of
 * RSS per worker compiled and 63 MB from source, in every healthy worker,
 * for code that acts only while the main loop is blocked; loading them on
 * the first block instead took seconds on a busy machine, longer than the
 * lease it was meant to keep. This loop needs only `pg` (its path, the
 * connection settings and the heartbeat statement's text come from the main
 * thread: the SQL still lives in db/claim.ts) and writes its few log lines
 * as pino-shaped JSON itself. Keep it plain JavaScript: it is never compiled.
 *
 * The loop: reads the main loop's tick counter every `checkMs`; when it has
 * not moved for `lateMs`, heartbeats the held leases every `heartbeatMs` on
 * a connection of its own; once the block outlasts the longest timeout of
 * the jobs held plus the abort grace, logs one line and SIGKILLs the
 * process. When its own timer is late too, the whole process was paused
 * (SIGSTOP) and it counts afresh.
 */
export const WATCHDOG_THREAD_SCRIPT = String.raw`
'use strict'
const { writeSync } = require('node:fs')
const { parentPort: port, workerData: data } = require('node:worker_threads')
const pg = require(data.pgPath)
const tick = new Int32Array(data.tick)
const timeoutsMs = new Map(data.timeoutsMs)
const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 }
const threshold = LEVELS[data.logLevel] ?? (data.logLevel === 'silent' ? Infinity : 30)
let fences = []
let lastSeen = Atomics.load(tick, 0)
let lastMovedAt = performance.now()
let lastCheckAt = lastMovedAt
let block = null
let beating = false
let killing = false
let client = null

// Straight to file descriptor 1, synchronously: a worker thread's
// process.stdout is relayed through the main thread, whose loop is blocked.
const log = (level, fields, msg) => {
  if (LEVELS[level] < threshold) return
  const line = { level: LEVELS[level], time: Date.now(), ...data.logBindings, component: 'watchdog', ...fields, msg }
  try {
    writeSync(1, JSON.stringify(line) + '\n')
  } catch {}
}

const closeClient = () => {
  const c = client
  client = null
  if (c) void c.end().catch(() => {})
}

const connection = async () => {
  if (client) return client
  const c = new pg.Client(data.clientConfig)
  // A lost server raises 'error' on the client; the next heartbeat reconnects.
  c.on('error', () => {})
  await c.connect()
  client = c
  return c
}

const beat = async () => {
  if (beating || fences.length === 0) return
  beating = true
  const sent = fences
  try {
    const values = {
      leaseMs: data.leaseMs,
      ids: sent.map((f) => f.id),
      attempts: sent.map((f) => f.attempt),
      tokens: sent.map((f) => f.leaseToken),
    }
    const result = await (await connection()).query(data.heartbeat.sql, data.heartbeat.parameters.map((name) => values[name]))
    log('debug', { jobs: sent.length, kept: result.rowCount }, 'watchdog heartbeat')
  } catch (err) {
    // The main loop's heartbeat finds out about lost leases once it runs again; here only the connection matters.
    log('warn', { errCode: err && typeof err.code === 'string' ? err.code : null, errMessage: err instanceof Error ? err.message : String(err) }, 'watchdog heartbeat failed')
    closeClient()
  } finally {
    beating = false
  }
}

const boundMs = () => {
  const held = fences.map((f) => timeoutsMs.get(f.type) ?? data.longestTimeoutMs)
  return (held.length > 0 ? Math.max(...held) : data.longestTimeoutMs) + data.abortGraceMs
}

const check = () => {
  const now = performance.now()
  const seen = Atomics.load(tick, 0)
  if (seen !== lastSeen || now - lastCheckAt > data.checkMs + data.lateMs) {
    lastSeen = seen
    lastMovedAt = now
  }
  lastCheckAt = now
  const lateMs = now - lastMovedAt
  if (lateMs <= data.lateMs) {
    if (block) {
      log('info', { blockedMs: Math.round(now - block.since) }, 'event loop running again')
      block = null
      closeClient()
    }
    return
  }
  if (!block) {
    block = { since: lastMovedAt, lastBeatAt: Number.NEGATIVE_INFINITY }
    log('warn', { jobIds: fences.map((f) => f.id), lateMs: Math.round(lateMs) }, 'event loop blocked; watchdog keeping leases')
  }
  const bound = boundMs()
  if (lateMs > bound) {
    // No heartbeat from here on: the leases run out and the rescuer takes the jobs back.
    if (killing) return
    killing = true
    log('error', { jobIds: fences.map((f) => f.id), blockedMs: Math.round(lateMs), boundMs: bound }, 'event loop wedged; killing process')
    process.kill(process.pid, 'SIGKILL')
    return
  }
  if (now - block.lastBeatAt >= data.heartbeatMs) {
    block.lastBeatAt = now
    void beat()
  }
}

const timer = setInterval(check, data.checkMs)

port.on('message', (message) => {
  if (message.kind === 'fences') {
    fences = message.fences
    return
  }
  clearInterval(timer)
  port.close()
  closeClient()
})

port.postMessage({ kind: 'ready' })
`
