import { InvalidStateError, JobNotFoundError, ValidationError } from '@backroom/queue-core'
import { useTestDatabase } from '@backroom/queue-core/testing'
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../app.ts'

const t = useTestDatabase()
let app: FastifyInstance

beforeAll(async () => {
  app = buildApp({ db: t.db })
  // Probe routes registered the way later route plugins will be: in their own encapsulated context.
  await app.register(async (scope) => {
    scope.post('/probe/validate', { schema: { body: Type.Object({ n: Type.Integer({ minimum: 1 }) }) } }, async () => ({ ok: true }))
    scope.get('/probe/job-not-found', async () => {
      throw new JobNotFoundError('42')
    })
    scope.get('/probe/invalid-payload', async () => {
      throw new ValidationError('payload does not match the system.canary schema', { errors: [{ path: '/sleepMs', message: 'must be integer' }] })
    })
    scope.get('/probe/invalid-state', async () => {
      throw new InvalidStateError('7', 'completed', 'cancel')
    })
    scope.get('/probe/crash', async () => {
      throw new Error('relation "secret_table" does not exist at db.internal:5432')
    })
  })
  await app.ready()
})
afterAll(async () => {
  await app.close()
})

describe('errorHandler', () => {
  it('maps schema validation failures to 400 invalid_request with details', async () => {
    const res = await app.inject({ method: 'POST', url: '/probe/validate', payload: { n: 0 } })
    expect(res.statusCode).toBe(400)
    expect(res.json()).toEqual({
      error: { code: 'invalid_request', message: 'body/n must be >= 1', details: [{ in: 'body', path: '/n', message: 'must be >= 1' }] },
    })
  })

  it('maps malformed JSON to 400 invalid_request', async () => {
    const res = await app.inject({ method: 'POST', url: '/probe/validate', headers: { 'content-type': 'application/json' }, payload: '{"n":' })
    expect(res.statusCode).toBe(400)
    expect(res.json().error.code).toBe('invalid_request')
  })

  it('maps queue-core ValidationError to 400 invalid_request with its details', async () => {
    const res = await app.inject({ method: 'GET', url: '/probe/invalid-payload' })
    expect(res.statusCode).toBe(400)
    expect(res.json().error).toMatchObject({ code: 'invalid_request', details: { errors: [{ path: '/sleepMs' }] } })
  })

  it('maps JobNotFoundError to 404 job_not_found', async () => {
    const res = await app.inject({ method: 'GET', url: '/probe/job-not-found' })
    expect(res.statusCode).toBe(404)
    expect(res.json()).toEqual({ error: { code: 'job_not_found', message: 'job not found', details: { jobId: '42' } } })
  })

  it('maps InvalidStateError to 409 invalid_state', async () => {
    const res = await app.inject({ method: 'GET', url: '/probe/invalid-state' })
    expect(res.statusCode).toBe(409)
    expect(res.json().error.code).toBe('invalid_state')
  })

  it('hides the detail of unexpected errors behind 500 internal_error', async () => {
    const res = await app.inject({ method: 'GET', url: '/probe/crash' })
    expect(res.statusCode).toBe(500)
    expect(res.json()).toEqual({ error: { code: 'internal_error', message: 'internal error' } })
    expect(res.body).not.toContain('secret_table')
  })
})

describe('notFoundHandler', () => {
  it('answers unknown routes with a 404 error body', async () => {
    const res = await app.inject({ method: 'GET', url: '/nope?x=1' })
    expect(res.statusCode).toBe(404)
    expect(res.json()).toEqual({ error: { code: 'not_found', message: 'route GET /nope not found' } })
  })
})
