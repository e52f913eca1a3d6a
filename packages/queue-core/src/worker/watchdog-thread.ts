/**
 * The watchdog thread's watch loop (see createWatchdog in watchdog.ts),
 * as the text of a script the thread is started on (`eval: true`).
 *
 * Why text and not a module: a thread started on a TypeScript module needs
 * a TypeScript loader of its own (tsx: Node 20 does not hand the process's
 * `--import tsx` to a worker), which cost about 20 MB of RSS per worker
 * process when run from source, and the loop's imports (pino, pg, kysely)
 * another 30-40 MB, in every healthy worker, for code that runs only while
 * the main loop is blocked. This loop needs nothing but the shared tick
 * counter; it loads watchdog-tools.ts (logger, connection, heartbeat) on
 * first need, when the main loop is blocked and this thread's own loop runs.
 * Keep it plain JavaScript (no TypeScript syntax): it is never compiled.
 *
 * The loop: reads the main loop's tick counter every `checkMs`; when it has
 * not moved for `lateMs`, heartbeats the held leases every `heartbeatMs`
 * through the tools; once the block outlasts the longest timeout of the jobs
 * held plus the abort grace, logs one line and SIGKILLs the process. When
 * its own timer is late too, the whole process was paused (SIGSTOP) and it
 * counts afresh.
 */
export const WATCHDOG_THREAD_SCRIPT = String.raw`
'use strict'
const { parentPort: port, workerData: data } = require('node:worker_threads')
const tick = new Int32Array(data.tick)
const timeoutsMs = new Map(data.timeoutsMs)
let fences = []
let lastSeen = Atomics.load(tick, 0)
let lastMovedAt = performance.now()
let lastCheckAt = lastMovedAt
let block = null
let beating = false
let killing = false
let loading = null

const tools = () =>
  (loading ??= (data.tsxApiHref
    ? import(data.tsxApiHref).then((tsx) => tsx.tsImport(data.toolsHref, data.toolsHref))
    : import(data.toolsHref)
  ).then((m) => m.createWatchdogTools(data)))

const logLater = (write) => tools().then((t) => write(t.log), () => {})

const boundMs = () => {
  const held = fences.map((f) => timeoutsMs.get(f.type) ?? data.longestTimeoutMs)
  return (held.length > 0 ? Math.max(...held) : data.longestTimeoutMs) + data.abortGraceMs
}

const beat = async () => {
  if (beating || fences.length === 0) return
  beating = true
  try {
    await (await tools()).heartbeat(fences)
  } catch {
    // Tools that cannot load: nothing to heartbeat with; the leases run out as without a watchdog.
  } finally {
    beating = false
  }
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
      const blockedMs = Math.round(now - block.since)
      block = null
      void logLater((log) => log.info({ blockedMs }, 'event loop running again'))
      if (loading) void loading.then((t) => t.close(), () => {})
    }
    return
  }
  if (!block) {
    block = { since: lastMovedAt, lastBeatAt: Number.NEGATIVE_INFINITY }
    const fields = { jobIds: fences.map((f) => f.id), lateMs: Math.round(lateMs) }
    void logLater((log) => log.warn(fields, 'event loop blocked; watchdog keeping leases'))
  }
  const bound = boundMs()
  if (lateMs > bound) {
    // No heartbeat from here on: the leases run out and the rescuer takes the jobs back.
    if (killing) return
    killing = true
    const fields = { jobIds: fences.map((f) => f.id), blockedMs: Math.round(lateMs), boundMs: bound }
    void logLater((log) => log.error(fields, 'event loop wedged; killing process')).finally(() => process.kill(process.pid, 'SIGKILL'))
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
  if (loading) void loading.then((t) => t.close(), () => {})
})

port.postMessage({ kind: 'ready' })
`
