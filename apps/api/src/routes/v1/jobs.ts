import {
  cancelJob,
  enqueue,
  enqueueMany,
  getJob,
  listJobs,
  retryJob,
  JOB_STATES,
  type EnqueueResult,
  type EnqueueSpec,
  type PriorityName,
} from '@backroom/queue-core'
import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import type { Redis } from 'ioredis'
import { Type } from 'typebox'
import { Compile } from 'typebox/compile'
import { ApiError } from '../../api-error.ts'
import { strictQueryIntegers } from '../../strict-query-integers.ts'
import { createEnqueueRateLimiter } from '../../enqueue-rate-limiter.ts'
import { checkPayload, payloadProblem } from '../../payload-check.ts'
import { priorityForKey } from '../../priority-policy.ts'
import { scopeOf, storeForWrite } from '../../principal.ts'
import { BatchBody, EnqueueBody } from '../../schemas/enqueue-body.ts'
import { ErrorBody } from '../../schemas/error-body.ts'
import { EnqueueOutcome, JobEnvelope, JobView, toJobView } from '../../schemas/job-view.ts'

/** Options of {@link jobsRoutes}. */
export interface JobsRoutesOptions {
  /** Shares enqueue rate limits between instances; null: per process. */
  readonly redis: Redis | null
  /** Most jobs one batch may carry (API_BATCH_LIMIT). */
  readonly batchLimit: number
  /** Enqueued jobs per second per store (API_STORE_RATE). */
  readonly storeRate: number
  /** The highest priority a store key may ask for (API_STORE_MAX_PRIORITY); platform keys may ask for any. */
  readonly storeMaxPriority: PriorityName
}

/** `GET /v1/jobs` query string. */
export const ListQuery = Type.Object(
  {
    state: Type.Optional(Type.Union(JOB_STATES.map((s) => Type.Literal(s)))),
    type: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    storeId: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: "a store key's list is its own store's whatever this says" })),
    userId: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    createdAfter: Type.Optional(Type.String({ format: 'date-time', description: 'inclusive' })),
    createdBefore: Type.Optional(Type.String({ format: 'date-time', description: 'exclusive' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, description: 'default 50' })),
    cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: "the previous page's nextCursor" })),
  },
  { additionalProperties: false },
)

const JobPageView = Type.Object({
  jobs: Type.Array(JobView),
  nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'null on the last page' }),
})
const BatchOutcome = Type.Object({ jobs: Type.Array(EnqueueOutcome) })
const IdParams = Type.Object({ id: Type.String() })
const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody, 413: ErrorBody, 429: ErrorBody }

/** Each batch item is checked with this (compiled once), so the batch can report every bad item. */
const checkEnqueueBody = Compile(EnqueueBody)

/** One bad batch item, as reported in a 400's details. */
interface ItemProblem {
  readonly index: number
  readonly code: string
  readonly message: string
  readonly details?: unknown
}

/**
 * The jobs resource: enqueue (one or a batch), read, list, cancel and retry.
 * Every read and operation is scoped to the key's store, and another store's
 * job answers exactly as a job that does not exist (queue-core's
 * JobNotFoundError → 404). All database work goes through request.withDb:
 * a store key's runs as the row-secured store role, so a filter missing
 * here still could not reach another store's rows. Bodies are checked by
 * TypeBox's own compiler, not Fastify's Ajv: Ajv's default
 * `removeAdditional` would silently drop a `state` or `attempt` field where
 * we must refuse it with a 400.
 */
export const jobsRoutes: FastifyPluginAsync<JobsRoutesOptions> = async (plain, options) => {
  const app = plain.withTypeProvider<TypeBoxTypeProvider>()
  app.setValidatorCompiler(TypeBoxValidatorCompiler)
  const limiter = createEnqueueRateLimiter({ rate: options.storeRate, redis: options.redis, log: app.log })

  /** Counts created jobs by type (deduped ones already existed). */
  function countCreated(request: FastifyRequest, results: ReadonlyArray<EnqueueResult>): void {
    for (const r of results) if (!r.deduped) request.server.queueMetrics.jobsEnqueued.inc({ type: r.job.type })
  }

  app.post(
    '/v1/jobs',
    {
      schema: {
        summary: 'Enqueue a job',
        description:
          '201 when created; 200 with deduped: true when a live job with the same dedupeKey exists. ' +
          'A store key asking for a priority above the policy ceiling (API_STORE_MAX_PRIORITY, default normal) gets 403 priority_not_allowed.',
        body: EnqueueBody,
        response: { 200: EnqueueOutcome, 201: EnqueueOutcome, ...errors },
      },
    },
    async (request, reply) => {
      const asked = toSpec(request, request.body)
      checkPayload(asked.type, asked.payload)
      // After the checks answering 400: a body wrong in several ways is reported as malformed first.
      const priority = priorityForKey(request, request.body.priority, options.storeMaxPriority)
      const spec = priority === undefined ? asked : { ...asked, priority }
      await limiter.take(spec.storeId, 1)
      // One transaction: an enqueue may take several statements (a coalescing
      // fold, a dedupe race, a capped store's lock); a failure must write nothing.
      const result = await request.withDb((trx) => enqueue(trx, spec), { transaction: true })
      countCreated(request, [result])
      request.log.info({ jobId: result.job.id, storeId: spec.storeId, jobType: spec.type, deduped: result.deduped }, 'job enqueued')
      return reply.code(result.deduped ? 200 : 201).send({ job: toJobView(result.job), deduped: result.deduped })
    },
  )

  app.post(
    '/v1/jobs/batch',
    {
      schema: {
        summary: 'Enqueue jobs, all or none',
        description:
          'Every item is checked first; any bad item answers 400 with details [{ index, code, message }] and nothing is written ' +
          '(403 priority_not_allowed when the only bad items are a store key\'s priorities above the ceiling). ' +
          'Then all jobs are written in one transaction. 201 when at least one job was created; 200 when every item was deduped.',
        body: BatchBody,
        response: { 200: BatchOutcome, 201: BatchOutcome, ...errors },
      },
    },
    async (request, reply) => {
      const items = request.body.jobs
      if (items.length > options.batchLimit) {
        throw new ApiError(400, 'batch_too_large', `a batch holds at most ${options.batchLimit} jobs`, {
          details: { limit: options.batchLimit, given: items.length },
        })
      }
      const specs: EnqueueSpec[] = []
      const problems: ItemProblem[] = []
      items.forEach((item, index) => {
        const problem = itemProblem(request, item, index, options.storeMaxPriority)
        if ('code' in problem) problems.push(problem)
        else specs.push(problem.spec)
      })
      if (problems.length > 0 && problems.every((p) => p.code === 'priority_not_allowed')) {
        throw new ApiError(403, 'priority_not_allowed', `${problems.length} of ${items.length} jobs ask for a priority above ${options.storeMaxPriority}; nothing was enqueued`, {
          details: problems,
        })
      }
      if (problems.length > 0) {
        throw new ApiError(400, 'invalid_batch', `${problems.length} of ${items.length} jobs are invalid; nothing was enqueued`, { details: problems })
      }
      // A batch names one store per item; every store named is charged for its own jobs.
      const perStore = new Map<string, number>()
      for (const s of specs) perStore.set(s.storeId, (perStore.get(s.storeId) ?? 0) + 1)
      for (const [storeId, n] of perStore) await limiter.take(storeId, n)
      // One transaction: enqueueMany may take several statements (dedupe races, capped stores).
      const results = await request.withDb((trx) => enqueueMany(trx, specs), { transaction: true })
      countCreated(request, results)
      const created = results.filter((r) => !r.deduped).length
      request.log.info({ jobs: results.length, created, stores: perStore.size }, 'jobs enqueued')
      return reply
        .code(created > 0 ? 201 : 200)
        .send({ jobs: results.map((r) => ({ job: toJobView(r.job), deduped: r.deduped })) })
    },
  )

  app.get(
    '/v1/jobs/:id',
    { schema: { summary: 'Read a job, live or finished', params: IdParams, response: { 200: JobEnvelope, ...errors } } },
    async (request) => ({ job: toJobView(await request.withDb((db) => getJob(db, request.params.id, scopeOf(request)))) }),
  )

  app.get(
    '/v1/jobs',
    {
      preValidation: strictQueryIntegers(['limit']),
      schema: {
        summary: 'List jobs, newest first (live and finished)',
        description: 'Keyset pagination: pass nextCursor back as cursor. A store key sees only its own store.',
        querystring: ListQuery,
        response: { 200: JobPageView, ...errors },
      },
    },
    async (request) => {
      const q = request.query
      const filters = {
        state: q.state,
        type: q.type,
        storeId: q.storeId,
        userId: q.userId,
        createdAfter: q.createdAfter === undefined ? undefined : new Date(q.createdAfter),
        createdBefore: q.createdBefore === undefined ? undefined : new Date(q.createdBefore),
        limit: q.limit,
        cursor: q.cursor,
      }
      const page = await request.withDb((db) => listJobs(db, filters, scopeOf(request)))
      return { jobs: page.jobs.map(toJobView), nextCursor: page.nextCursor }
    },
  )

  app.post(
    '/v1/jobs/:id/cancel',
    {
      schema: {
        summary: 'Cancel a job',
        description: 'Pending, scheduled or paused: cancelled at once. Running: the worker is asked to abort (state stays running until it does). 409 when finished.',
        params: IdParams,
        response: { 200: JobEnvelope, ...errors },
      },
    },
    async (request) => {
      const job = await request.withDb((db) => cancelJob(db, request.params.id, scopeOf(request)))
      request.log.info({ jobId: job.id, storeId: job.storeId, state: job.state }, 'job cancel requested')
      return { job: toJobView(job) }
    },
  )

  app.post(
    '/v1/jobs/:id/retry',
    {
      schema: {
        summary: 'Retry a failed or cancelled job',
        description: 'Back to pending with fresh attempts, same id. 409 for any other state.',
        params: IdParams,
        response: { 200: JobEnvelope, ...errors },
      },
    },
    async (request) => {
      const job = await request.withDb((db) => retryJob(db, request.params.id, scopeOf(request)))
      request.log.info({ jobId: job.id, storeId: job.storeId }, 'job retried')
      return { job: toJobView(job) }
    },
  )
}

/** An enqueue body as a queue-core spec, for the key's store (400 when the body names a store it may not). */
function toSpec(request: FastifyRequest, body: EnqueueBody): EnqueueSpec & { storeId: string } {
  if (body.runAt !== undefined && body.delayMs !== undefined) {
    throw new ApiError(400, 'invalid_request', 'give runAt or delayMs, not both', { details: [{ path: '/runAt' }, { path: '/delayMs' }] })
  }
  const storeId = storeForWrite(request, body.storeId)
  return {
    type: body.type,
    storeId,
    payload: body.payload,
    ...(body.priority === undefined ? {} : { priority: body.priority }),
    ...(body.runAt === undefined ? {} : { runAt: new Date(body.runAt) }),
    ...(body.delayMs === undefined ? {} : { delayMs: body.delayMs }),
    ...(body.dedupeKey === undefined ? {} : { dedupeKey: body.dedupeKey }),
    ...(body.maxAttempts === undefined ? {} : { maxAttempts: body.maxAttempts }),
    ...(body.userId === undefined ? {} : { userId: body.userId }),
  }
}

/** One batch item checked as a single enqueue would be: schema, store, payload, priority policy. */
function itemProblem(request: FastifyRequest, item: unknown, index: number, ceiling: PriorityName): ItemProblem | { spec: EnqueueSpec } {
  if (!checkEnqueueBody.Check(item)) {
    const details = [...checkEnqueueBody.Errors(item)].slice(0, 10).map((e) => ({ path: e.instancePath, message: e.message }))
    return { index, code: 'invalid_request', message: `jobs[${index}] does not match the enqueue body`, details }
  }
  let spec: EnqueueSpec
  try {
    spec = toSpec(request, item)
  } catch (err) {
    if (err instanceof ApiError) return { index, code: err.code, message: err.message }
    throw err
  }
  const problem = payloadProblem(spec.type, spec.payload)
  if (problem) return { index, ...problem }
  try {
    const priority = priorityForKey(request, item.priority, ceiling)
    return { spec: priority === undefined ? spec : { ...spec, priority } }
  } catch (err) {
    if (err instanceof ApiError) return { index, code: err.code, message: err.message, details: err.details }
    throw err
  }
}
