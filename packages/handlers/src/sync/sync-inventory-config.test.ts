import { Compile } from 'typebox/compile'
import { beforeAll, describe, expect, it } from 'vitest'
import { createUrlGuard } from '../lib/url-guard.ts'
import { useHandlerTestBed } from '../testing/run-jobs.ts'
import { chunkSkus, inventoryApiConfig, MAX_SKUS_PARAM_CHARS } from './inventory-api.ts'
import { createSyncInventory } from './sync-inventory.ts'
import { MAX_SKUS_PER_ENQUEUE, SyncInventoryJobPayload, SyncInventoryPayload } from './sync-inventory-payload.ts'
import { syncInventorySpec } from './sync-inventory-spec.ts'
import { SYNC_INVENTORY_TYPE } from './sync-inventory-type-settings.ts'

const bed = useHandlerTestBed()

describe('sync.inventory without configuration', () => {
  // A worker whose environment lacks the endpoint (its own database: one handler per type per pool).
  beforeAll(async () => {
    await bed.startWorker([createSyncInventory(bed.deps({ INVENTORY_API_KEY: 'k' }))], { concurrency: 1 })
  })

  it('fails not_configured at once, naming INVENTORY_API_URL', async () => {
    const done = await bed.waitFinished((await bed.enqueue({ type: SYNC_INVENTORY_TYPE, payload: { skus: ['A'] } })).id)
    expect(done.state).toBe('failed')
    expect(done.attempt).toBe(1)
    expect(done.lastError?.code).toBe('not_configured')
    expect(done.lastError?.message).toMatch(/INVENTORY_API_URL/)
  })
})

describe('inventoryApiConfig', () => {
  const urlGuard = createUrlGuard()

  it('names the missing or wrong variable', () => {
    const code = (env: Record<string, string>) => {
      try {
        inventoryApiConfig(env, urlGuard)
        return null
      } catch (err) {
        return [(err as { code: string }).code, (err as { details: { variable: string } }).details.variable]
      }
    }
    expect(code({})).toEqual(['not_configured', 'INVENTORY_API_URL'])
    expect(code({ INVENTORY_API_URL: 'ftp://x' })).toEqual(['not_configured', 'INVENTORY_API_URL'])
    expect(code({ INVENTORY_API_URL: 'https://inv.example' })).toEqual(['not_configured', 'INVENTORY_API_KEY'])
    expect(code({ INVENTORY_API_URL: 'https://inv.example', INVENTORY_API_KEY: 'k', INVENTORY_API_TIMEOUT_MS: 'soon' })).toEqual([
      'not_configured',
      'INVENTORY_API_TIMEOUT_MS',
    ])
    expect(inventoryApiConfig({ INVENTORY_API_URL: 'https://inv.example/api/', INVENTORY_API_KEY: 'k' }, urlGuard)).toEqual({
      baseUrl: 'https://inv.example/api',
      apiKey: 'k',
      timeoutMs: 15_000,
      urlGuard,
    })
  })
})

describe('sync.inventory payload', () => {
  it('accepts the contract shapes and nothing else', () => {
    const check = Compile(SyncInventoryPayload)
    expect(check.Check({})).toBe(true)
    expect(check.Check({ skus: [] })).toBe(true)
    expect(check.Check({ skus: ['SKU-1', 'a b/c', '*'] })).toBe(true)
    expect(check.Check({ skus: ['A,B'] })).toBe(false)
    expect(check.Check({ skus: ['x'.repeat(129)] })).toBe(false)
    expect(check.Check({ skus: Array.from({ length: MAX_SKUS_PER_ENQUEUE + 1 }, (_, i) => `S${i}`) })).toBe(false)
    expect(check.Check({ storeId: 's' })).toBe(false)
  })

  it('lets a job run whatever a full batch of valid enqueues folds into it', () => {
    const folded = Array.from({ length: 100 * MAX_SKUS_PER_ENQUEUE }, (_, i) => `S${i}`)
    expect(Compile(SyncInventoryJobPayload).Check({ skus: folded })).toBe(true)
    expect(syncInventorySpec('s').payload).toEqual({ skus: ['*'] })
    expect(syncInventorySpec('s', []).payload).toEqual({ skus: ['*'] })
  })
})

describe('chunkSkus', () => {
  it('cuts by count and by encoded length', () => {
    expect(chunkSkus(['a', 'b', 'c'], 2)).toEqual([['a', 'b'], ['c']])
    const long = Array.from({ length: 100 }, (_, i) => `${'x'.repeat(120)}${i}`)
    const chunks = chunkSkus(long, 500)
    expect(chunks.length).toBeGreaterThan(1)
    expect(chunks.flat()).toEqual(long)
    for (const chunk of chunks) expect(encodeURIComponent(chunk.join(',')).length).toBeLessThanOrEqual(MAX_SKUS_PARAM_CHARS)
  })
})
