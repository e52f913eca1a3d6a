import { beforeAll, describe, expect, it } from 'vitest'
import { connect } from './db/connect.ts'
import { ValidationError } from './errors.ts'
import { queueDepth } from './queue-depth.ts'
import { queueHealth } from './queue-health.ts'
import { useTestDatabase } from './testing/use-test-database.ts'

const t = useTestDatabase()

/** A live job of `type` in `state`, created `agoMs` ago. */
async function live(type: string, state: 'pending' | 'scheduled' | 'running' | 'paused', agoMs = 0): Promise<void> {
  await t.db.pool.query(
    `insert into jobs (type, store_id, state, attempt, created_at, run_at, started_at, lease_token, locked_until)
     select $1, 's', $2, case when $2 = 'running' then 1 else 0 end, c, c,
            case when $2 = 'running' then c end, case when $2 = 'running' then gen_random_uuid() end,
            case when $2 = 'running' then now() + interval '1 minute' end
     from (select now() - $3 * interval '1 ms' as c) x`,
    [type, state, agoMs],
  )
}

beforeAll(async () => {
  await live('d.x', 'pending', 120_000)
  await live('d.x', 'pending')
  await live('d.x', 'running', 600_000)
  await live('d.y', 'scheduled')
  await live('d.y', 'paused')
})

describe('queueDepth', () => {
  it('gives the per-type figures of queueHealth', async () => {
    const depth = await queueDepth(t.db.kysely)
    const health = await queueHealth(t.db.kysely)
    expect(depth.map((d) => ({ ...d, oldestPendingMs: d.oldestPendingMs === null ? null : Math.round(d.oldestPendingMs / 1000) }))).toEqual(
      health.byType.map((h) => ({
        type: h.type,
        pending: h.pending,
        scheduled: h.scheduled,
        running: h.running,
        paused: h.paused,
        oldestPendingMs: h.oldestPendingMs === null ? null : Math.round(h.oldestPendingMs / 1000),
      })).sort((a, b) => a.type.localeCompare(b.type)),
    )
    expect(depth.find((d) => d.type === 'd.y')?.oldestPendingMs).toBeNull()
  })

  it('fails instead of waiting past its timeout, and leaves the connection without it', async () => {
    const db = connect({ connectionString: t.url, max: 1 })
    const locker = connect({ connectionString: t.url, max: 1 })
    const client = await locker.pool.connect()
    try {
      await client.query('begin')
      await client.query('lock table jobs in access exclusive mode')
      await expect(queueDepth(db.kysely, { timeoutMs: 200 })).rejects.toMatchObject({ code: '57014' })
      await client.query('commit')
      // The timeout was transaction-local: the pool's one connection is back to its own setting.
      const { rows } = await db.pool.query('show statement_timeout')
      expect(rows[0].statement_timeout).not.toBe('200ms')
      expect((await queueDepth(db.kysely)).length).toBe(2)
    } finally {
      client.release()
      await locker.close()
      await db.close()
    }
  })

  it('refuses a timeout that is not a positive integer', async () => {
    for (const timeoutMs of [0, -1, 1.5]) await expect(queueDepth(t.db.kysely, { timeoutMs })).rejects.toBeInstanceOf(ValidationError)
  })
})
