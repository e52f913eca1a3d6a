import { describe, expect, it } from 'vitest'
import { canary } from './canary.ts'
import { payloadSchemas } from '../schemas.ts'
import { Compile } from 'typebox/compile'

describe('system.canary payload', () => {
  it('accepts the contract shapes and nothing else', () => {
    const check = Compile(payloadSchemas['system.canary']!)
    expect(check.Check({})).toBe(true)
    expect(check.Check({ sleepMs: 10, fail: 'retryable' })).toBe(true)
    expect(check.Check({ fail: 'permanent' })).toBe(true)
    expect(check.Check({ fail: 'sometimes' })).toBe(false)
    expect(check.Check({ sleepMs: -1 })).toBe(false)
    expect(() => canary.parse({ extra: 1 })).toThrow(/system.canary/)
  })
})
