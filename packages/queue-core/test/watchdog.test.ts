import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { claimBatch } from '../src/db/claim.ts'
import { enqueue } from '../src/enqueue.ts'
import { waitFor } from '../src/testing/fixtures.ts'
import { useTestDatabase } from '../src/testing/use-test-database.ts'
import { killAllChildren, PACKAGE_DIR, spawnTsChild, type TsChild } from './fixtures/child-process.ts'

const t = useTestDatabase()
afterAll(killAllChildren)

const LEASE_MS = 900
const CHILD = 'test/fixtures/watchdog-child.mjs'

/** The package compiled as for production, where only plain JavaScript runs (no tsx, no source condition). */
const DIST_DIR = join(PACKAGE_DIR, 'node_modules', '.cache', `watchdog-dist-${process.pid}`)

beforeAll(async () => {
  // The compiler's exit code is not checked: a type error elsewhere in the
  // package must not fail this test, and tsc emits JavaScript regardless.
  await promisify(execFile)(join(PACKAGE_DIR, 'node_modules', '.bin', 'tsc'), [
    '-p', 'tsconfig.build.json', '--outDir', DIST_DIR, '--tsBuildInfoFile', join(DIST_DIR, '.tsbuildinfo'), '--declaration', 'false', '--sourceMap', 'false',
  ], { cwd: PACKAGE_DIR }).catch((err: { stdout?: string }) => err.stdout)
  for (const file of ['watchdog.js', 'watchdog-thread.js']) {
    if (!existsSync(join(DIST_DIR, 'worker', file))) throw new Error(`the build wrote no worker/${file}`)
  }
}, 120_000)
afterAll(() => rm(DIST_DIR, { recursive: true, force: true }))

const FORMS = {
  source: { module: () => pathToFileURL(join(PACKAGE_DIR, 'src/worker/watchdog.ts')).href, nodeArgs: ['--import', 'tsx'] },
  dist: { module: () => pathToFileURL(join(DIST_DIR, 'worker/watchdog.js')).href, nodeArgs: [] },
} as const

/** Claims a fresh job for `type` (not heartbeated by anyone but the child's watchdog). */
async function claimJob(type: string) {
  await enqueue(t.db.kysely, { type, storeId: 'store-1' })
  const [row] = await claimBatch(t.db.kysely, { workerId: 'w-test', limit: 1, leaseMs: LEASE_MS, types: [type] })
  if (!row) throw new Error('nothing to claim')
  return { id: String(row.id), attempt: row.attempt, leaseToken: row.lease_token, type }
}

function spawnChild(form: keyof typeof FORMS, fence: object, env: Record<string, string>): TsChild {
  return spawnTsChild(CHILD, {
    label: `watchdog-${form}`,
    nodeArgs: FORMS[form].nodeArgs,
    env: { DATABASE_URL: t.url, WATCHDOG_MODULE: FORMS[form].module(), WATCHDOG_FENCE: JSON.stringify(fence), WORKER_LEASE_MS: String(LEASE_MS), ...env },
  })
}

const watchdogSessions = async (): Promise<number> =>
  Number(
    (await t.db.pool.query(`select count(*) as n from pg_stat_activity where datname = current_database() and application_name = 'backroom-watchdog'`))
      .rows[0].n,
  )

const leaseEndMs = async (id: string): Promise<number> =>
  Number((await t.db.pool.query('select extract(epoch from locked_until) * 1000 as ms from jobs where id = $1', [id])).rows[0].ms)

const dbNowMs = async (): Promise<number> => Number((await t.db.pool.query('select extract(epoch from now()) * 1000 as ms')).rows[0].ms)

const logLine = (child: TsChild, msg: string) => child.messages.find((m) => m.msg === msg)

describe.each(['source', 'dist'] as const)('the watchdog thread, run from %s', (form) => {
  it('opens no connection while the loop runs, and keeps the held lease while the loop is blocked past it', { timeout: 60_000 }, async () => {
    const fence = await claimJob(`test.block-${form}`)
    const child = spawnChild(form, fence, { HANDLER_TIMEOUT_MS: '20000', ABORT_GRACE_MS: '1000', IDLE_MS: String(3 * LEASE_MS), BLOCK_MS: String(5 * LEASE_MS) })
    await child.message('ready', 30_000)
    // The loop runs freely for three leases: the thread stays off the database.
    while (!child.messages.some((m) => m.event === 'blocking')) {
      expect(await watchdogSessions(), child.stderr()).toBe(0)
      await new Promise((r) => setTimeout(r, 50))
    }
    const blockedAt = await dbNowMs()
    // Nobody else heartbeats this job: only the thread can carry its lease two leases past the block's start.
    await waitFor(async () => (await leaseEndMs(fence.id)) > blockedAt + 2 * LEASE_MS, {
      timeoutMs: 4 * LEASE_MS,
      what: `the lease of job ${fence.id} to be extended while the loop is blocked\n${child.stderr()}`,
    })
    await child.message('stopped', 30_000)
    expect(await child.exited).toEqual({ code: 0, signal: null })
    expect(logLine(child, 'event loop blocked; watchdog keeping leases')).toMatchObject({ jobIds: [fence.id], component: 'watchdog', level: 40 })
    expect(logLine(child, 'event loop running again')).toMatchObject({ blockedMs: expect.any(Number) })
    expect(logLine(child, 'event loop wedged; killing process')).toBeUndefined()
    // The connection it opened for the block is closed again.
    await waitFor(async () => (await watchdogSessions()) === 0, { what: 'the watchdog session to end' })
  })

  it('kills the process once the loop stays blocked past the held job timeout plus the abort grace', { timeout: 60_000 }, async () => {
    const fence = await claimJob(`test.wedge-${form}`)
    const child = spawnChild(form, fence, { HANDLER_TIMEOUT_MS: '1500', ABORT_GRACE_MS: '500', IDLE_MS: '0', BLOCK_MS: 'forever' })
    await child.message('blocking', 30_000)
    const exit = await Promise.race([child.exited, new Promise((r) => setTimeout(() => r('still running after 15 s'), 15_000))])
    expect(exit, child.stderr()).toEqual({ code: null, signal: 'SIGKILL' })
    const wedged = logLine(child, 'event loop wedged; killing process')
    expect(wedged, child.stderr()).toMatchObject({ jobIds: [fence.id], boundMs: 2_000, level: 50, label: 'watchdog-child' })
    expect(wedged!.blockedMs as number).toBeGreaterThan(2_000)
    expect(child.messages.some((m) => m.event === 'unblocked')).toBe(false)
  })
})

describe('the watchdog thread', () => {
  it('does not take a process paused as a whole (SIGSTOP) for a wedged loop', { timeout: 60_000 }, async () => {
    const fence = await claimJob('test.pause')
    const child = spawnChild('source', fence, { HANDLER_TIMEOUT_MS: '1000', ABORT_GRACE_MS: '500', IDLE_MS: '6000', BLOCK_MS: '0' })
    await child.message('ready', 30_000)
    // Paused for twice the bound; the thread stops with the main loop.
    child.signal('SIGSTOP')
    await new Promise((r) => setTimeout(r, 3_000))
    child.signal('SIGCONT')
    await child.message('stopped', 30_000)
    expect(await child.exited, child.stderr()).toEqual({ code: 0, signal: null })
    expect(logLine(child, 'event loop wedged; killing process')).toBeUndefined()
  })
})
