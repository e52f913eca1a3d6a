// The server's ceiling for the kind of transaction a queue is made of: one tiny
// row update and a commit. Every queue here spends at least one commit per job
// (or per batch), so commits/s of this server bound every jobs/s figure; with
// fsync and synchronous_commit on, each commit waits for a WAL flush.
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { admin, withDatabase } from '../database.ts'
import { progress } from '../progress.ts'
import { withClient } from './measure.ts'

const run = promisify(execFile)

/** Options of {@link pgbenchCeiling}. */
export interface PgbenchOptions {
  /** Any database on the server to measure; a scratch database is created next to it. */
  readonly url: string
  readonly clients: number
  readonly seconds: number
  /** Rows the updates spread over (default 1,000: little lock contention at bench client counts). */
  readonly rows?: number
  /** The pgbench binary (default PGBENCH, else /usr/bin/pgbench). */
  readonly pgbench?: string
}

/** What {@link pgbenchCeiling} measured. */
export interface PgbenchResult {
  /** Committed single-row-update transactions per second (pgbench's "without initial connection time"). */
  readonly tps: number
  /** Mean latency per transaction, ms. */
  readonly latencyMs: number
  /** Settings that decide what a commit costs, as SHOW prints them. */
  readonly settings: Record<string, string>
  /** The exact pgbench command line (without the connection string). */
  readonly command: string
}

/** Settings that decide what a commit costs. */
const COMMIT_SETTINGS = [
  'server_version',
  'fsync',
  'synchronous_commit',
  'wal_sync_method',
  'full_page_writes',
  'commit_delay',
  'wal_level',
  'shared_buffers',
  'max_connections',
]

/**
 * Runs pgbench for `seconds` with `clients` connections against a scratch
 * database holding one table of `rows` rows, each transaction
 * `update t set n = n + 1 where id = :id` for a random id (prepared protocol,
 * autocommit: one commit per update), and reports its tps with the server's
 * commit settings. The scratch database is dropped afterwards.
 */
export async function pgbenchCeiling(opts: PgbenchOptions): Promise<PgbenchResult> {
  const rows = opts.rows ?? 1_000
  const binary = opts.pgbench ?? process.env.PGBENCH ?? '/usr/bin/pgbench'
  const name = `bench_pgbench_${process.pid}_${Date.now().toString(36)}`
  const scratch = withDatabase(opts.url, name)
  const dir = await mkdtemp(join(tmpdir(), 'bench-pgbench-'))
  await admin(opts.url, `create database "${name}"`)
  try {
    await withClient(scratch, async (c) => {
      await c.query('create table t (id int primary key, n bigint not null default 0)')
      await c.query('insert into t (id) select generate_series(1, $1::int)', [rows])
      await c.query('vacuum analyze t')
    })
    const script = join(dir, 'update.sql')
    await writeFile(script, `\\set id random(1, ${rows})\nupdate t set n = n + 1 where id = :id;\n`)
    // -n: no pgbench_* tables to vacuum; -j: one thread per core at most, more only contend.
    const threads = Math.max(1, Math.min(opts.clients, availableParallelism()))
    const args = ['-n', '-M', 'prepared', '-c', String(opts.clients), '-j', String(threads), '-T', String(opts.seconds), '-f', script]
    progress(`pgbench: ${opts.clients} clients for ${opts.seconds} s`)
    const { stdout } = await run(binary, [...args, scratch], { timeout: (opts.seconds + 60) * 1000 })
    const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(stdout)?.[1]
    const latency = /latency average = ([\d.]+) ms/.exec(stdout)?.[1]
    if (tps === undefined) throw new Error(`no tps in pgbench output:\n${stdout}`)
    const settings = await withClient(scratch, async (c) => {
      const { rows: found } = await c.query<{ name: string; setting: string }>(
        'select name, current_setting(name) as setting from unnest($1::text[]) as name',
        [COMMIT_SETTINGS],
      )
      return Object.fromEntries(found.map((r) => [r.name, r.setting]))
    })
    return { tps: Number(tps), latencyMs: Number(latency ?? NaN), settings, command: `pgbench ${args.map((a) => (a === script ? 'update.sql' : a)).join(' ')}` }
  } finally {
    await admin(opts.url, `drop database if exists "${name}" with (force)`)
    await rm(dir, { recursive: true, force: true })
  }
}
