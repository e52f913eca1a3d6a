// The `import` workload: one import.products job of a generated CSV feed,
// served over HTTP from this process, run by a Backroom worker in its own
// process (so its peak RSS is the import's, not the bench's). This file is
// also that worker's entry: run with BENCH_IMPORT_CHILD=1 it starts the pool.
import { spawn } from 'node:child_process'
import { createServer, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { connect, createWorkerPool, enqueue, getJob, migrate } from '@backroom/queue-core'
import { createImportProducts, createImportProductsChunk, handlerDeps, migrateShop } from '@backroom/handlers'
import { progress } from '../progress.ts'

/** Slots of the import worker: the parent plus chunks in parallel. */
const WORKER_CONCURRENCY = 4
/**
 * The worker's V8 heap limit, as a deployment within 200 MB sets it: V8 sizes
 * its heap from the machine's memory and otherwise lets garbage pile up far
 * past what the import holds (see packages/handlers/test/import-memory.test.ts).
 */
export const IMPORT_WORKER_HEAP_MB = 128

/** What one import run measured. */
export interface ImportRun {
  readonly rows: number
  /** From the enqueue to the parent job completed, ms. */
  readonly ms: number
  readonly rowsPerSec: number
  /** The worker process's peak resident memory, MiB (process.resourceUsage().maxRSS). */
  readonly peakRssMb: number
  /** Its resident memory once started, before the import, MiB. */
  readonly startRssMb: number
  readonly state: string
  readonly rowsDone: number
  readonly rowsFailed: number
  /** Products of the store afterwards. */
  readonly products: number
  /** What the feed should leave: distinct SKUs, and lines done and rejected. */
  readonly expected: { readonly products: number; readonly rowsDone: number; readonly rowsFailed: number }
}

/** Row `i` (1-based) of the generated feed: every 1000th has a bad price; the last 1% repeat earlier SKUs. */
function feedLine(i: number, rows: number): string {
  const repeats = Math.floor(rows / 100)
  const sku = i > rows - repeats ? i - (rows - repeats) : i
  const price = i % 1_000 === 0 ? 'n/a' : `${(i % 900) + 1}.${String(i % 100).padStart(2, '0')}`
  return `sku-${sku},Product ${i},"A product, number ${i}",${price},EUR,${i % 500},${i % 13}\n`
}

function expectation(rows: number): ImportRun['expected'] {
  // Replayed from the generator: a bad line of a repeated SKU leaves the earlier line's product.
  const skus = new Set<string>()
  let bad = 0
  for (let i = 1; i <= rows; i++) {
    const [sku, , , , price] = feedLine(i, rows).split(',')
    if (price === 'n/a') bad++
    else skus.add(sku!)
  }
  return { products: skus.size, rowsDone: rows - bad, rowsFailed: bad }
}

async function writeFeed(res: ServerResponse, rows: number): Promise<void> {
  res.writeHead(200, { 'content-type': 'text/csv' })
  res.write('sku,title,description,price,currency,stock,shelf\n')
  for (let i = 1; i <= rows; i += 1_000) {
    let piece = ''
    for (let k = i; k <= Math.min(rows, i + 999); k++) piece += feedLine(k, rows)
    if (!res.write(piece)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          res.off('drain', done)
          res.off('close', done)
          resolve()
        }
        res.on('drain', done)
        res.on('close', done)
      })
    }
    if (res.destroyed) return
  }
  res.end()
}

/**
 * Imports a `rows`-line feed into a fresh database at `url` and measures
 * rows/s (enqueue to completion, worker already started) and the worker's
 * peak RSS.
 */
export async function importProducts(opts: { url: string; rows: number; timeoutMs: number }): Promise<ImportRun> {
  await migrate({ connectionString: opts.url })
  await migrateShop(opts.url)
  const server: Server = createServer((_req, res) => void writeFeed(res, opts.rows))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const child = spawn(process.execPath, [`--max-old-space-size=${IMPORT_WORKER_HEAP_MB}`, '--conditions=@backroom/source', '--import', 'tsx', fileURLToPath(import.meta.url)], {
    // The feed server is on loopback, which the handlers' URL guard lets through only by name.
    env: { ...process.env, BENCH_IMPORT_CHILD: '1', DATABASE_URL: opts.url, IMPORT_FEED_ALLOWED_ORIGINS: origin, HANDLER_URL_ALLOWLIST: new URL(origin).host },
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const lines: Array<Record<string, unknown>> = []
  let buffered = ''
  child.stdout!.setEncoding('utf8').on('data', (c: string) => {
    buffered += c
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      const line = buffered.slice(0, nl)
      buffered = buffered.slice(nl + 1)
      if (line.startsWith('{')) lines.push(JSON.parse(line) as Record<string, unknown>)
    }
  })
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()))
  const message = async (event: string, timeoutMs: number) => {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const found = lines.find((m) => m.event === event)
      if (found) return found
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`import worker: no '${event}'`)
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  const db = connect({ connectionString: opts.url, max: 2 })
  try {
    const ready = await message('ready', 60_000)
    const started = performance.now()
    const { job } = await enqueue(db.kysely, { type: 'import.products', storeId: 'bench-store', payload: { feedUrl: `${origin}/feed.csv`, format: 'csv' } })
    const deadline = Date.now() + opts.timeoutMs
    let finished = await getJob(db.kysely, job.id)
    while (!['completed', 'failed', 'cancelled'].includes(finished.state) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100))
      finished = await getJob(db.kysely, job.id)
      const p = finished.progress as { rowsDone?: number; linesRead?: number } | null
      progress(`import: ${p?.rowsDone ? `${p.rowsDone} rows done` : `${p?.linesRead ?? 0} lines staged`} of ${opts.rows}`)
    }
    const ms = performance.now() - started
    child.kill('SIGTERM')
    const stopped = await message('stopped', 30_000)
    const result = (finished.result ?? {}) as { rowsDone?: number; rowsFailed?: number }
    const count = await db.pool.query<{ n: string }>('select count(*) as n from shop.products where store_id = $1', ['bench-store'])
    return {
      rows: opts.rows,
      ms,
      rowsPerSec: opts.rows / (ms / 1000),
      peakRssMb: (stopped.maxRssBytes as number) / 1024 / 1024,
      startRssMb: (ready.rssBytes as number) / 1024 / 1024,
      state: finished.state,
      rowsDone: result.rowsDone ?? 0,
      rowsFailed: result.rowsFailed ?? 0,
      products: Number(count.rows[0]!.n),
      expected: expectation(opts.rows),
    }
  } finally {
    child.kill('SIGKILL')
    await exited
    await db.close()
    server.closeAllConnections()
    await new Promise((r) => server.close(r))
  }
}

/** The worker process (BENCH_IMPORT_CHILD=1): the import handlers over DATABASE_URL. */
async function childMain(): Promise<void> {
  const url = process.env.DATABASE_URL!
  const db = connect({ connectionString: url, max: 8 })
  const deps = handlerDeps(db, process.env)
  const pool = createWorkerPool({
    db: db.kysely,
    connectionString: url,
    handlers: [createImportProducts(deps, { pollMs: 250 }), createImportProductsChunk(deps)],
    concurrency: WORKER_CONCURRENCY,
  })
  await pool.start()
  const send = (m: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(m)}\n`)
  send({ event: 'ready', rssBytes: process.memoryUsage().rss })
  process.stdin.on('end', () => process.exit(3))
  process.stdin.resume()
  process.once('SIGTERM', () => {
    void pool
      .stop()
      .then(() => db.close())
      .then(() => {
        // maxRSS is in kilobytes.
        send({ event: 'stopped', maxRssBytes: process.resourceUsage().maxRSS * 1024 })
        process.exit(0)
      })
  })
}

if (process.env.BENCH_IMPORT_CHILD === '1') await childMain()

