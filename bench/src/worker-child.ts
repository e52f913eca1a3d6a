// A Backroom worker process for multi-process bench runs: argv = url, concurrency.
// Prints "handled N" lines so the parent can count handler calls across processes.
import { connect, createWorkerPool } from '@backroom/queue-core'
import { benchHandler } from './systems/backroom.ts'

const [url, concurrency, prefetch] = process.argv.slice(2)
const db = connect({ connectionString: url!, max: 4 })
let handled = 0
const pool = createWorkerPool({
  db: db.kysely,
  connectionString: url!,
  handlers: [benchHandler(() => handled++)],
  concurrency: Number(concurrency),
  prefetch: Number(prefetch ?? 0),
})
// Ready once connected; start claiming only on "go" so process start-up is not timed.
process.stdout.write('handled 0\n')
await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()))
await pool.start()
const report = setInterval(() => process.stdout.write(`handled ${handled}\n`), 100)
process.once('SIGTERM', async () => {
  await pool.stop()
  clearInterval(report)
  process.stdout.write(`handled ${handled}\n`)
  await db.close()
  process.exit(0)
})
