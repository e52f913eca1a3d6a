import { describe, expect, it } from 'vitest'
import { authenticateApiKey, createApiKey, revokeApiKey } from './api-keys.ts'
import { useTestDatabase } from './testing/use-test-database.ts'

const t = useTestDatabase()

describe('API keys', () => {
  it('authenticates a new store key and a platform key, and stores neither token', async () => {
    const store = await createApiKey(t.db.kysely, { storeId: 'store-42', label: 'dashboard' })
    const platform = await createApiKey(t.db.kysely, { storeId: null })
    expect(store.key).toMatch(/^brk_\d+_[A-Za-z0-9_-]{43}$/)
    expect(await authenticateApiKey(t.db.kysely, store.key)).toEqual({ keyId: store.keyId, storeId: 'store-42' })
    expect(await authenticateApiKey(t.db.kysely, platform.key)).toEqual({ keyId: platform.keyId, storeId: null })
    const { rows } = await t.db.pool.query<{ dump: string }>(`select row_to_json(k)::text as dump from api_keys k`)
    // The secret is everything after `brk_<id>_`: it is base64url, so it may hold `_` itself.
    const secretOf = (key: string) => key.replace(/^brk_\d+_/, '')
    for (const { dump } of rows) {
      expect(dump).not.toContain(secretOf(store.key))
      expect(dump).not.toContain(secretOf(platform.key))
    }
  })

  it('refuses malformed, unknown, tampered and revoked tokens alike', async () => {
    const { key, keyId } = await createApiKey(t.db.kysely, { storeId: 'store-7' })
    const last = key.at(-1) === 'A' ? 'B' : 'A'
    for (const bad of ['', 'Bearer x', 'brk_1_short', `brk_999999_${key.replace(/^brk_\d+_/, '')}`, `${key.slice(0, -1)}${last}`]) {
      expect(await authenticateApiKey(t.db.kysely, bad), bad).toBeNull()
    }
    expect(await revokeApiKey(t.db.kysely, keyId)).toEqual({ storeId: 'store-7' })
    expect(await authenticateApiKey(t.db.kysely, key)).toBeNull()
    expect(await revokeApiKey(t.db.kysely, keyId)).toEqual({ storeId: 'store-7' })
    expect(await revokeApiKey(t.db.kysely, '424242')).toBeUndefined()
    expect(await revokeApiKey(t.db.kysely, 'abc')).toBeUndefined()
  })

  it('rejects a bad store id or label at creation', async () => {
    await expect(createApiKey(t.db.kysely, { storeId: '' })).rejects.toThrow(/storeId/)
    await expect(createApiKey(t.db.kysely, { storeId: 's', label: 'x'.repeat(201) })).rejects.toThrow(/label/)
  })
})
