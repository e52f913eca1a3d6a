import { randomBytes } from 'node:crypto'
import { Writable } from 'node:stream'
import { REDACT_PATHS } from '@backroom/queue-core/runtime'
import { useTestDatabase } from '@backroom/queue-core/testing'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { authPlugin, PREVIOUS_ADMIN_KEY_WARN_MS } from '../src/plugins/auth.ts'
import { errorHandler, notFoundHandler } from '../src/plugins/error-handler.ts'

const t = useTestDatabase()
const CURRENT = `current-${randomBytes(24).toString('base64url')}`
const PREVIOUS = `previous-${randomBytes(24).toString('base64url')}`

interface LogLine {
  level: number
  msg: string
  keyId?: string
  usesSinceLastWarning?: number
}

let app: FastifyInstance | null = null
afterEach(async () => {
  await app?.close()
  app = null
})

/** The auth plugin on a bare route, with an injected clock and every log line captured. */
async function authApp(options: { previous: string | null; now: () => number }): Promise<{ app: FastifyInstance; lines: LogLine[]; raw: string[] }> {
  const lines: LogLine[] = []
  const raw: string[] = []
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) {
        raw.push(line)
        lines.push(JSON.parse(line) as LogLine)
      }
      done()
    },
  })
  const logger: FastifyBaseLogger = pino({ level: 'info', redact: [...REDACT_PATHS] }, sink)
  const instance: FastifyInstance = Fastify({ loggerInstance: logger })
  instance.setErrorHandler(errorHandler)
  instance.setNotFoundHandler(notFoundHandler)
  instance.register(authPlugin, { db: t.db, adminKey: CURRENT, previousAdminKey: options.previous, now: options.now })
  instance.register(async (scope) => {
    scope.get('/v1/whoami', async (request) => ({ keyId: request.principal?.keyId }))
  })
  await instance.ready()
  app = instance
  return { app: instance, lines, raw }
}

const whoami = (target: FastifyInstance, token: string) => target.inject({ method: 'GET', url: '/v1/whoami', headers: { authorization: `Bearer ${token}` } })

describe('BACKROOM_ADMIN_KEY_PREVIOUS', () => {
  it('is accepted beside the current key, and the request log names which one was used, never its value', async () => {
    const { app: target, lines, raw } = await authApp({ previous: PREVIOUS, now: () => 0 })
    expect((await whoami(target, CURRENT)).json()).toEqual({ keyId: 'admin' })
    expect((await whoami(target, PREVIOUS)).json()).toEqual({ keyId: 'admin-previous' })
    expect((await whoami(target, `${PREVIOUS}x`)).statusCode).toBe(401)
    expect((await whoami(target, PREVIOUS.slice(0, -1))).statusCode).toBe(401)
    const completed = lines.filter((l) => l.msg === 'request completed')
    expect(completed.map((l) => l.keyId)).toEqual(['admin', 'admin-previous', undefined, undefined])
    for (const secret of [CURRENT, PREVIOUS]) expect(raw.join('\n')).not.toContain(secret)
  })

  it('warns at most once a minute that a client still uses the previous key, counting the uses in between', async () => {
    let now = 1_000_000
    const { app: target, lines } = await authApp({ previous: PREVIOUS, now: () => now })
    const warnings = () => lines.filter((l) => l.level === 40)
    for (let i = 0; i < 5; i++) {
      expect((await whoami(target, PREVIOUS)).statusCode).toBe(200)
      now += 10_000
    }
    // The current key never warns.
    expect((await whoami(target, CURRENT)).statusCode).toBe(200)
    expect(warnings()).toHaveLength(1)
    expect(warnings()[0]).toMatchObject({ keyId: 'admin-previous', usesSinceLastWarning: 1 })
    expect(warnings()[0]!.msg).toMatch(/BACKROOM_ADMIN_KEY_PREVIOUS/)
    now = 1_000_000 + PREVIOUS_ADMIN_KEY_WARN_MS
    expect((await whoami(target, PREVIOUS)).statusCode).toBe(200)
    expect(warnings()).toHaveLength(2)
    expect(warnings()[1]).toMatchObject({ usesSinceLastWarning: 5 })
  })

  it('is refused when not configured: a rotation that ended accepts only the current key', async () => {
    const { app: target, lines } = await authApp({ previous: null, now: () => 0 })
    expect((await whoami(target, PREVIOUS)).statusCode).toBe(401)
    expect((await whoami(target, CURRENT)).json()).toEqual({ keyId: 'admin' })
    expect(lines.filter((l) => l.level === 40)).toEqual([])
  })
})
