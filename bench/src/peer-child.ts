// A peer worker process for multi-process bench runs:
// argv = system (pgboss | graphile), variant (fast | defaults), url, concurrency.
// Same protocol as worker-child.ts: prints "handled N" lines so the parent can count
// handler calls across processes, and starts claiming only on a line on stdin.
import type { GraphileWorker } from './systems/graphile-worker.ts'
import type { PgBossWorker } from './systems/pg-boss.ts'

const [system, variant, url, concurrency] = process.argv.slice(2)
if (!url || (variant !== 'fast' && variant !== 'defaults')) {
  process.stderr.write('usage: peer-child.ts <pgboss|graphile> <fast|defaults> <url> <concurrency>\n')
  process.exit(2)
}
let handled = 0
const opts = { url, variant, concurrency: Number(concurrency), onJob: () => void handled++ } as const
let worker: PgBossWorker | GraphileWorker
if (system === 'pgboss') {
  const { connectPgBossWorker } = await import('./systems/pg-boss.ts')
  worker = await connectPgBossWorker(opts)
} else if (system === 'graphile') {
  const { connectGraphileWorker } = await import('./systems/graphile-worker.ts')
  worker = await connectGraphileWorker(opts)
} else {
  process.stderr.write(`unknown system ${system}\n`)
  process.exit(2)
}
// Ready once connected; start claiming only on "go" so process start-up is not timed.
process.stdout.write('handled 0\n')
await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()))
await worker.start()
const report = setInterval(() => process.stdout.write(`handled ${handled}\n`), 100)
process.once('SIGTERM', async () => {
  await worker.stop()
  clearInterval(report)
  process.stdout.write(`handled ${handled}\n`)
  process.exit(0)
})
