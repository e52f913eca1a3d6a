import { beforeAll, describe, expect, it } from 'vitest'
import { ValidationError } from './errors.ts'
import { liveJobReferences } from './job-references.ts'
import { useTestDatabase } from './testing/use-test-database.ts'

const t = useTestDatabase()

/** A live job naming `value` in its payload's `fileId`. */
async function live(storeId: string, type: string, state: 'pending' | 'scheduled' | 'running' | 'paused', value: string): Promise<void> {
  await t.db.pool.query(
    `insert into jobs (type, store_id, state, attempt, payload, started_at, lease_token, locked_until)
     values ($1, $2, $3, case when $3 = 'running' then 1 else 0 end, jsonb_build_object('fileId', $4::text),
             case when $3 = 'running' then now() end, case when $3 = 'running' then gen_random_uuid() end,
             case when $3 = 'running' then now() + interval '1 minute' end)`,
    [type, storeId, state, value],
  )
}

beforeAll(async () => {
  await live('s1', 'r.read', 'pending', '1')
  await live('s1', 'r.read', 'scheduled', '2')
  await live('s1', 'r.read', 'running', '3')
  await live('s1', 'r.read', 'paused', '4')
  await live('s1', 'r.other', 'pending', '5')
  await live('s2', 'r.read', 'pending', '6')
  await t.db.pool.query(
    `insert into job_history (id, type, queue, store_id, priority, state, attempt, payload, errors, run_at, created_at)
     values (999999, 'r.read', 'default', 's1', 5, 'completed', 1, '{"fileId":"7"}', '[]', now(), now())`,
  )
})

describe('liveJobReferences', () => {
  it('finds the values live jobs of the type name for their own store, in any live state', async () => {
    const refs = ['1', '2', '3', '4', '5', '6', '7', '8'].map((value) => ({ storeId: 's1', value }))
    const found = await liveJobReferences(t.db.kysely, { type: 'r.read', field: 'fileId', refs })
    expect(found.map((r) => r.value).sort()).toEqual(['1', '2', '3', '4'])
    expect(found.every((r) => r.storeId === 's1')).toBe(true)
  })

  it('does not count another store\'s job, another field, or nothing asked', async () => {
    expect(await liveJobReferences(t.db.kysely, { type: 'r.read', field: 'fileId', refs: [{ storeId: 's2', value: '1' }] })).toEqual([])
    expect(await liveJobReferences(t.db.kysely, { type: 'r.read', field: 'other', refs: [{ storeId: 's1', value: '1' }] })).toEqual([])
    expect(await liveJobReferences(t.db.kysely, { type: 'r.read', field: 'fileId', refs: [] })).toEqual([])
  })

  it('refuses an empty type or field, and more than 1,000 refs', async () => {
    await expect(liveJobReferences(t.db.kysely, { type: '', field: 'fileId', refs: [] })).rejects.toBeInstanceOf(ValidationError)
    const many = Array.from({ length: 1_001 }, (_, i) => ({ storeId: 's1', value: String(i) }))
    await expect(liveJobReferences(t.db.kysely, { type: 'r.read', field: 'fileId', refs: many })).rejects.toBeInstanceOf(ValidationError)
  })
})
