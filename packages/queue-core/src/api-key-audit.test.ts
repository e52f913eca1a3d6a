import { describe, expect, it } from 'vitest'
import { deleteExpiredApiKeyAudit, listApiKeyEvents, recordApiKeyUses, type ApiKeyUseCount } from './api-key-audit.ts'
import { createApiKey, revokeApiKey } from './api-keys.ts'
import { useTestDatabase } from './testing/use-test-database.ts'

const t = useTestDatabase()

interface AuditRow {
  key_id: string
  store_id: string | null
  event: string
  actor: string | null
  uses: string | null
}

async function auditRows(keyId: string): Promise<AuditRow[]> {
  const { rows } = await t.db.pool.query<AuditRow>(
    `select key_id, store_id, event, actor, uses::text as uses from api_key_audit where key_id = $1 order by id`,
    [keyId],
  )
  return rows
}

const hour = (iso: string) => new Date(iso)

describe('API key audit: changes', () => {
  it('writes one created row and one revoked row, naming the actor, however often the key is revoked', async () => {
    const key = await createApiKey(t.db.kysely, { storeId: 'store-1', actor: 'cli' })
    expect(await revokeApiKey(t.db.kysely, key.keyId, { actor: 'admin-previous' })).toEqual({ storeId: 'store-1' })
    expect(await revokeApiKey(t.db.kysely, key.keyId, { actor: 'admin' })).toEqual({ storeId: 'store-1' })
    expect(await auditRows(key.keyId)).toEqual([
      { key_id: key.keyId, store_id: 'store-1', event: 'created', actor: 'cli', uses: null },
      { key_id: key.keyId, store_id: 'store-1', event: 'revoked', actor: 'admin-previous', uses: null },
    ])
  })

  it('records one revocation when several race for the same key', async () => {
    const platform = await createApiKey(t.db.kysely, { storeId: null })
    const revokers = await Promise.all(Array.from({ length: 4 }, () => createApiKey(t.db.kysely, { storeId: null, actor: 'admin' })))
    const results = await Promise.all(revokers.map((r) => revokeApiKey(t.db.kysely, platform.keyId, { actor: r.keyId })))
    expect(results).toEqual(revokers.map(() => ({ storeId: null })))
    const rows = await auditRows(platform.keyId)
    expect(rows.map((r) => r.event)).toEqual(['created', 'revoked'])
    expect(rows[0]!.actor).toBe('unknown')
    expect(revokers.map((r) => r.keyId)).toContain(rows[1]!.actor)
  })

  it('commits the audit row with the change or not at all', async () => {
    let keyId = ''
    await expect(
      t.db.kysely.transaction().execute(async (trx) => {
        keyId = (await createApiKey(trx, { storeId: 'store-rollback', actor: 'cli' })).keyId
        throw new Error('caller rolls back')
      }),
    ).rejects.toThrow('caller rolls back')
    expect(await auditRows(keyId)).toEqual([])
    expect((await t.db.pool.query(`select 1 from api_keys where id = $1`, [keyId])).rowCount).toBe(0)
  })

  it('refuses an actor the audit cannot name, writing nothing', async () => {
    const before = (await t.db.pool.query(`select count(*)::int as n from api_key_audit`)).rows[0].n
    await expect(createApiKey(t.db.kysely, { storeId: null, actor: 'mallory' })).rejects.toThrow(/actor/)
    await expect(revokeApiKey(t.db.kysely, '1', { actor: '' })).rejects.toThrow(/actor/)
    expect((await t.db.pool.query(`select count(*)::int as n from api_key_audit`)).rows[0].n).toBe(before)
  })

  it('holds neither the token, nor its secret part, nor its hash', async () => {
    const key = await createApiKey(t.db.kysely, { storeId: 'store-secret', actor: 'cli' })
    await revokeApiKey(t.db.kysely, key.keyId, { actor: 'cli' })
    await recordApiKeyUses(t.db.kysely, [use(key.keyId, 'store-secret', '2026-01-01T10:00:00Z', 3)])
    const { rows: hashes } = await t.db.pool.query<{ hex: string; b64: string }>(
      `select encode(token_hash, 'hex') as hex, encode(token_hash, 'base64') as b64 from api_keys where id = $1`,
      [key.keyId],
    )
    const { rows } = await t.db.pool.query<{ dump: string }>(`select string_agg(row_to_json(a)::text, '\n') as dump from api_key_audit a`)
    const dump = rows[0]!.dump
    expect(dump).toContain(key.keyId)
    for (const secret of [key.key, key.key.replace(/^brk_\d+_/, ''), hashes[0]!.hex, hashes[0]!.b64]) expect(dump).not.toContain(secret)
  })
})

function use(keyId: string, storeId: string | null, hourIso: string, uses: number, first = hourIso, last = hourIso): ApiKeyUseCount {
  return { keyId, storeId, hour: hour(hourIso), uses, firstUsedAt: new Date(first), lastUsedAt: new Date(last) }
}

describe('API key audit: uses', () => {
  it('adds counts per key and hour, widening first and last use', async () => {
    await recordApiKeyUses(t.db.kysely, [
      use('admin', null, '2026-02-01T10:00:00Z', 5, '2026-02-01T10:10:00Z', '2026-02-01T10:20:00Z'),
      use('admin', null, '2026-02-01T11:00:00Z', 1, '2026-02-01T11:00:01Z', '2026-02-01T11:00:01Z'),
    ])
    await recordApiKeyUses(t.db.kysely, [use('admin', null, '2026-02-01T10:00:00Z', 2, '2026-02-01T10:05:00Z', '2026-02-01T10:15:00Z')])
    const { rows } = await t.db.pool.query(
      `select at, uses::int, first_used_at, last_used_at from api_key_audit where key_id = 'admin' and event = 'used' order by at`,
    )
    expect(rows).toEqual([
      { at: hour('2026-02-01T10:00:00Z'), uses: 7, first_used_at: hour('2026-02-01T10:05:00Z'), last_used_at: hour('2026-02-01T10:20:00Z') },
      { at: hour('2026-02-01T11:00:00Z'), uses: 1, first_used_at: hour('2026-02-01T11:00:01Z'), last_used_at: hour('2026-02-01T11:00:01Z') },
    ])
  })

  it('keeps exact totals when many processes flush overlapping rows at once, in any order', async () => {
    const keys = ['11', '12', '13', 'admin-previous']
    const hours = ['2026-03-01T00:00:00Z', '2026-03-01T01:00:00Z']
    // 12 flushers, each with every (key, hour) in its own shuffled order: a
    // statement that locked rows in input order could deadlock here.
    const flushes = Array.from({ length: 12 }, (_, f) => {
      const counts = keys.flatMap((k) => hours.map((h) => use(k, null, h, f + 1)))
      const rotated = [...counts.slice(f % counts.length), ...counts.slice(0, f % counts.length)]
      return f % 2 === 1 ? rotated.reverse() : rotated
    })
    await Promise.all(flushes.map((counts) => recordApiKeyUses(t.db.kysely, counts)))
    const { rows } = await t.db.pool.query<{ key_id: string; total: string; n: string }>(
      `select key_id, sum(uses)::text as total, count(*)::text as n from api_key_audit
       where event = 'used' and key_id = any($1) and at >= '2026-03-01' group by key_id order by key_id`,
      [keys],
    )
    // Each (key, hour) gets 1 + 2 + … + 12 = 78, and each key has 2 hours.
    expect(rows).toEqual([...keys].sort().map((k) => ({ key_id: k, total: String(2 * 78), n: '2' })))
  })
})

describe('listApiKeyEvents', () => {
  it('pages a key’s rows newest first, and answers null for a key that does not exist', async () => {
    const key = await createApiKey(t.db.kysely, { storeId: 'store-pages', actor: 'admin' })
    await recordApiKeyUses(t.db.kysely, [use(key.keyId, 'store-pages', '2026-04-01T08:00:00Z', 4)])
    await recordApiKeyUses(t.db.kysely, [use(key.keyId, 'store-pages', '2026-04-01T09:00:00Z', 6)])
    await revokeApiKey(t.db.kysely, key.keyId, { actor: 'admin' })

    // Newest first by `at`: the changes happened now, the uses in April 2026's hours.
    const first = await listApiKeyEvents(t.db.kysely, key.keyId, { limit: 3 })
    expect(first!.events.map((e) => [e.event, e.uses, e.actor])).toEqual([
      ['revoked', null, 'admin'],
      ['created', null, 'admin'],
      ['used', 6, null],
    ])
    expect(first!.events[2]).toMatchObject({ keyId: key.keyId, storeId: 'store-pages', at: hour('2026-04-01T09:00:00Z') })
    const second = await listApiKeyEvents(t.db.kysely, key.keyId, { limit: 3, cursor: first!.nextCursor! })
    expect(second!.events.map((e) => [e.event, e.uses])).toEqual([['used', 4]])
    expect(second!.nextCursor).toBeNull()
    // A cursor names a row of this key's list: another key's cursor gives an empty page, not someone else's rows.
    const other = await createApiKey(t.db.kysely, { storeId: 'store-other', actor: 'cli' })
    expect((await listApiKeyEvents(t.db.kysely, other.keyId, { cursor: first!.nextCursor! }))!.events).toEqual([])

    expect(await listApiKeyEvents(t.db.kysely, '987654321')).toBeNull()
    expect(await listApiKeyEvents(t.db.kysely, 'nope')).toBeNull()
    expect(await listApiKeyEvents(t.db.kysely, 'admin')).not.toBeNull()
    await expect(listApiKeyEvents(t.db.kysely, key.keyId, { limit: 0 })).rejects.toThrow(/limit/)
    await expect(listApiKeyEvents(t.db.kysely, key.keyId, { cursor: 'garbage!' })).rejects.toThrow(/cursor/)
  })
})

describe('deleteExpiredApiKeyAudit', () => {
  it('deletes rows older than the cut-off, in bounded statements, and keeps the rest', async () => {
    const counts = Array.from({ length: 30 }, (_, i) => use('admin-previous', null, new Date(Date.UTC(2020, 0, 1, i)).toISOString(), 1))
    await recordApiKeyUses(t.db.kysely, [...counts, use('admin-previous', null, '2026-05-01T00:00:00Z', 1)])
    const old = `select count(*)::int as n from api_key_audit where at < '2021-01-01'`
    expect((await t.db.pool.query(old)).rows[0].n).toBe(30)
    expect(await deleteExpiredApiKeyAudit(t.db.kysely, { before: new Date('2021-01-01T00:00:00Z'), maxRows: 20 })).toBe(20)
    expect(await deleteExpiredApiKeyAudit(t.db.kysely, { before: new Date('2021-01-01T00:00:00Z') })).toBe(10)
    expect((await t.db.pool.query(old)).rows[0].n).toBe(0)
    expect((await t.db.pool.query(`select count(*)::int as n from api_key_audit where at = '2026-05-01'`)).rows[0].n).toBe(1)
  })
})
