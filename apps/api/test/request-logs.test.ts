import { Writable } from 'node:stream'
import { createApiKey } from '@backroom/queue-core'
import { REDACT_PATHS } from '@backroom/queue-core/runtime'
import { useTestDatabase } from '@backroom/queue-core/testing'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { testApp } from './test-app.ts'

const t = useTestDatabase()

describe('request logs', () => {
  it('carry reqId, and storeId and keyId once authenticated, on the completion line; never the key', async () => {
    const lines: Array<Record<string, unknown>> = []
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(line))
        done()
      },
    })
    const logger = pino({ level: 'info', redact: [...REDACT_PATHS] }, sink)
    const app = await testApp({ db: t.db, logger })
    try {
      const { key, keyId } = await createApiKey(t.db.kysely, { storeId: 'store-log' })
      const res = await app.inject({ method: 'GET', url: '/v1/jobs', headers: { authorization: `Bearer ${key}` } })
      expect(res.statusCode).toBe(200)
      const completed = lines.find((l) => l.msg === 'request completed')
      expect(completed).toMatchObject({ storeId: 'store-log', keyId, reqId: expect.anything() })
      expect(JSON.stringify(lines)).not.toContain(key)
    } finally {
      await app.close()
    }
  })
})
