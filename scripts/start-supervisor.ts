/**
 * The body of `pnpm start` (launched by start.ts in its own process group):
 * opens the database (embedded unless DATABASE_URL is set), migrates, starts
 * the API and the worker as child processes, prints where the API is once
 * /healthz answers, and on SIGINT/SIGTERM forwards the signal to both, waits
 * for them to drain, then stops PostgreSQL and exits 0.
 */
import { fileURLToPath } from 'node:url'
import { migrate } from '@backroom/queue-core'
import { redactDatabaseUrl } from './lib/describe-database-url.ts'
import { openDatabase, type OpenDatabase } from './lib/open-database.ts'
import { spawnService, type Service } from './lib/spawn-service.ts'
import { waitForHttp } from './lib/wait-for-http.ts'

/**
 * How long services get to drain after the signal before they are killed:
 * the worker's grace period plus time to write outcomes and disconnect.
 */
const STOP_TIMEOUT_MS = (Number(process.env.WORKER_SHUTDOWN_GRACE_MS) || 10_000) + 20_000

const root = fileURLToPath(new URL('..', import.meta.url))
const stop = new AbortController()
let stopSignal: NodeJS.Signals = 'SIGTERM'

function requestStop(signal: NodeJS.Signals): void {
  if (stop.signal.aborted) return
  stopSignal = signal
  stop.abort()
}
process.on('SIGINT', () => requestStop('SIGINT'))
process.on('SIGTERM', () => requestStop('SIGTERM'))
process.on('SIGHUP', () => requestStop('SIGTERM'))
// start.ts is gone (killed hard, terminal closed): nobody can stop us any more, so stop now.
process.on('disconnect', () => requestStop('SIGTERM'))

const stopped = new Promise<'stop'>((resolve) => stop.signal.addEventListener('abort', () => resolve('stop'), { once: true }))

async function main(): Promise<number> {
  const port = Number(process.env.PORT ?? 3000)
  if (!Number.isInteger(port) || port < 1 || port > 65_535) throw new Error('PORT must be an integer from 1 to 65535')
  const db = await openDatabase({ root, databaseUrl: process.env.DATABASE_URL?.trim() || undefined })
  try {
    if (stop.signal.aborted) return 0
    await migrate({ connectionString: db.url })
    if (stop.signal.aborted) return 0
    return await runServices(db, port)
  } finally {
    await db.stop()
  }
}

async function runServices(db: OpenDatabase, port: number): Promise<number> {
  const env = { ...process.env, DATABASE_URL: db.url, PORT: String(port) }
  const services: Service[] = [
    spawnService({ name: 'api', entry: 'apps/api/src/server.ts', root, env }),
    spawnService({ name: 'worker', entry: 'apps/worker/src/main.ts', root, env }),
  ]
  const crashed = Promise.race(services.map((s) => s.exited.then((code) => ({ kind: 'crashed' as const, name: s.name, code }))))
  const stopping = stopped.then(() => ({ kind: 'stop' as const }))

  const giveUp = new AbortController()
  const healthy = waitForHttp(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.any([stop.signal, giveUp.signal]) }).then(
    () => ({ kind: 'healthy' as const }),
    // Aborted: a stop or a crash, which the race below sees by itself.
    () => new Promise<never>(() => {}),
  )
  let ending = await Promise.race([healthy, crashed, stopping])
  if (ending.kind === 'healthy') {
    console.log(`Backroom API on http://127.0.0.1:${port} (${db.label})`)
    ending = await Promise.race([crashed, stopping])
  }
  giveUp.abort()
  if (ending.kind === 'crashed') console.error(`pnpm start: the ${ending.name} exited with code ${ending.code}; stopping the rest`)

  for (const s of services) if (s.running) s.child.kill(stopSignal)
  const codes = await Promise.all(services.map((s) => exitWithin(s, STOP_TIMEOUT_MS)))
  if (ending.kind === 'stop' && codes.every((c) => c === 0)) return 0
  services.forEach((s, i) => {
    if (codes[i] !== 0 && !(ending.kind === 'crashed' && ending.name === s.name)) {
      console.error(`pnpm start: the ${s.name} exited with code ${codes[i]}`)
    }
  })
  return 1
}

/** The service's exit code; SIGKILL after `ms` (a drain that hangs must not keep PostgreSQL up forever). */
async function exitWithin(service: Service, ms: number): Promise<number> {
  const timer = setTimeout(() => {
    console.error(`pnpm start: the ${service.name} did not stop within ${ms / 1000} s; killing it`)
    service.child.kill('SIGKILL')
  }, ms)
  try {
    return await service.exited
  } finally {
    clearTimeout(timer)
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    const message = err instanceof Error ? err.message : String(err)
    console.error(`pnpm start failed: ${redactDatabaseUrl(message, process.env.DATABASE_URL)}`)
    process.exit(1)
  },
)
