import type pg from 'pg'
import { fromPgClient } from './db/connect.ts'
import type { Executor } from './db/database.ts'
import * as coalesce from './db/coalesce.ts'
import * as jobs from './db/jobs.ts'
import { toJob, type JobRow } from './db/rows.ts'
import { StoreCapacityError, ValidationError } from './errors.ts'
import { isBigintId, isStorableText, JOB_TYPE_NAME, MAX_ID_LENGTH, MAX_TYPE_LENGTH } from './validate.ts'
import { PRIORITIES, type EnqueueResult, type EnqueueSpec, type Job, type Priority } from './types.ts'

/** Where enqueue runs: our Kysely, a caller's Kysely transaction, or a caller's `pg` client. */
export type EnqueueTarget = Executor | pg.ClientBase

const MAX_DEDUPE_KEY_LENGTH = 255
/** A deduped job can finish between our insert and our look-up; try again this often. */
const DEDUPE_RETRIES = 3

/**
 * Adds one job. Pass a transaction (Kysely or `pg` client) to enqueue
 * atomically with your own writes: the job exists only if you commit.
 *
 * @example
 * const { job, deduped } = await enqueue(trx, {
 *   type: 'sync.inventory', storeId: 'store-42', payload: {}, dedupeKey: 'inventory',
 * })
 */
export async function enqueue<P = unknown>(target: EnqueueTarget, spec: EnqueueSpec<P>): Promise<EnqueueResult<P>> {
  const [result] = await enqueueMany<P>(target, [spec])
  return result as EnqueueResult<P>
}

/**
 * Adds many jobs in one statement (unnest), with one notification. Results
 * come back in input order. A dedupe key repeated inside the batch, or already
 * held by a live job of the store, yields that job with `deduped: true`.
 *
 * Throws {@link ValidationError} (nothing written) if any spec is invalid,
 * or names a parent (`parentId`) that is not a live job of its store.
 * Coalescing jobs, dedupe races and capped stores can take further
 * statements; on a pool each commits by itself, so a caller that needs all
 * or nothing passes a transaction (the API does). Not opened here: every
 * plain enqueue on a pool would pay two more round trips for it.
 */
export async function enqueueMany<P = unknown>(
  target: EnqueueTarget,
  specs: ReadonlyArray<EnqueueSpec<P>>,
): Promise<EnqueueResult<P>[]> {
  const db = toExecutor(target)
  const now = Date.now()
  const rows = specs.map((spec, index) => normalise(spec, index, now))
  const results: (EnqueueResult<P> | undefined)[] = new Array(rows.length)
  // Coalescing jobs go one by one (each may fold into an open job); the rest in one statement.
  for (const [i, row] of rows.entries()) {
    if (row.coalesceKey !== null) results[i] = await coalesceOne(db, row, specs[i]!, i)
  }
  let todo = rows.flatMap((row, i) => (row.coalesceKey === null ? [i] : []))
  for (let round = 0; round < DEDUPE_RETRIES && todo.length > 0; round++) {
    // The first of each (store, key) inside the batch is inserted; later ones share its job.
    const firstOf = new Map<string, number>()
    const insertIdx: number[] = []
    const sharers: Array<[number, number]> = []
    for (const i of todo) {
      const row = rows[i]!
      if (row.dedupeKey === null) {
        insertIdx.push(i)
        continue
      }
      const key = `${row.storeId}\u0000${row.dedupeKey}`
      const first = firstOf.get(key)
      if (first === undefined) {
        firstOf.set(key, i)
        insertIdx.push(i)
      } else sharers.push([i, first])
    }
    const { inserted, refused, missingParents } = await insertCapped(db, insertIdx.map((i) => rows[i]!))
    if (missingParents.length > 0) throw parentError(rows, missingParents)
    if (refused.length > 0) throw await capacityError(db, refused)
    const insertedKeys = new Set(inserted.filter((r) => r.dedupe_key !== null).map((r) => `${r.store_id}\u0000${r.dedupe_key}`))
    const createdIdx = insertIdx.filter((i) => {
      const row = rows[i]!
      return row.dedupeKey === null || insertedKeys.has(`${row.storeId}\u0000${row.dedupeKey}`)
    })
    // insertMany returns inserted rows ordered by id, which follows input order.
    createdIdx.forEach((i, k) => {
      results[i] = { job: newJob<P>(rows[i]!, specs[i]!, inserted[k]!), deduped: false }
    })
    const conflicted = insertIdx.filter((i) => results[i] === undefined)
    const existing = await jobs.findByDedupeKeys(
      db,
      conflicted.map((i) => ({ storeId: rows[i]!.storeId, dedupeKey: rows[i]!.dedupeKey as string })),
    )
    const byKey = new Map(existing.map((r) => [`${r.store_id}\u0000${r.dedupe_key}`, r]))
    for (const i of conflicted) {
      const row = byKey.get(`${rows[i]!.storeId}\u0000${rows[i]!.dedupeKey}`)
      if (row) results[i] = { job: toJob<P>(row), deduped: true }
    }
    for (const [i, first] of sharers) {
      const firstResult = results[first]
      if (firstResult) results[i] = { job: firstResult.job, deduped: true }
    }
    todo = todo.filter((i) => results[i] === undefined)
  }
  if (todo.length > 0) throw new Error('dedupe conflict did not settle; the conflicting job kept finishing')
  return results as EnqueueResult<P>[]
}

/**
 * A just-inserted job, from what was sent and what the database decided. The
 * payload is the caller's own value (as it was serialised), not a copy read back.
 */
function newJob<P>(row: jobs.NewJobRow, spec: EnqueueSpec<P>, inserted: jobs.InsertedRow): Job<P> {
  return {
    id: String(inserted.id),
    type: row.type,
    queue: row.queue,
    storeId: row.storeId,
    userId: row.userId,
    priority: row.priority,
    state: inserted.state,
    attempt: 0,
    maxAttempts: row.maxAttempts,
    payload: (spec.payload === undefined ? {} : spec.payload) as P,
    dedupeKey: row.dedupeKey,
    runAt: new Date(inserted.run_at_ms),
    createdAt: new Date(inserted.created_at_ms),
    startedAt: null,
    finishedAt: null,
    progress: null,
    errors: [],
    lastError: null,
    result: null,
  }
}

/**
 * Inserts rows; when a store of the batch has a live-job cap, again with
 * those stores' rows locked (in a transaction: the caller's, or a new one), so
 * concurrent enqueues count one after another and the cap holds exactly.
 * Stores without a cap take one statement, as before.
 */
async function insertCapped(
  db: Executor,
  rows: ReadonlyArray<jobs.NewJobRow>,
  options: { readonly coalescing?: boolean } = {},
): Promise<{ inserted: jobs.InsertedRow[]; refused: jobs.RefusedStore[]; missingParents: jobs.MissingParent[] }> {
  const first = await jobs.insertMany(db, rows, options)
  if (first.needsLock.length === 0 || first.missingParents.length > 0) return first
  const locked = async (trx: Executor) => {
    await jobs.lockStores(trx, first.needsLock)
    return jobs.insertMany(trx, rows, { ...options, storesLocked: true })
  }
  return db.isTransaction ? locked(db) : db.transaction().execute(locked)
}

/** A coalescing job that keeps being claimed between our merge and our insert is retried this often. */
const COALESCE_ROUNDS = 5

/**
 * Enqueues one job of a coalescing type: folds it into the store's open job
 * of the same key (merged payload returned, `coalesced: true`), or seals a
 * full one and starts a new open job, due after the type's max delay.
 */
async function coalesceOne<P>(db: Executor, row: jobs.NewJobRow, spec: EnqueueSpec<P>, index: number): Promise<EnqueueResult<P>> {
  const key = row.coalesceKey as string
  const settings = await coalesce.coalesceSettings(db, row.type)
  if (!settings) {
    throw new ValidationError(`jobs[${index}].coalesceKey: job type ${row.type} does not coalesce (configureJobType with coalesce)`, {
      index,
      field: 'coalesceKey',
    })
  }
  for (let round = 0; round < COALESCE_ROUNDS; round++) {
    const merged = await coalesce.mergeIntoOpen(db, { storeId: row.storeId, type: row.type, key, payload: row.payload, settings })
    if (merged) {
      const job = newJob<P>(row, spec, { id: merged.id, store_id: row.storeId, dedupe_key: null, state: merged.state, run_at_ms: merged.run_at_ms, created_at_ms: merged.created_at_ms })
      return { job: { ...job, payload: merged.payload as P }, deduped: false, coalesced: true }
    }
    await coalesce.sealFull(db, { storeId: row.storeId, type: row.type, key, maxBatch: settings.maxBatch })
    const open = { ...row, runAt: row.runAt ?? new Date(Date.now() + settings.maxDelayMs) }
    const { inserted, refused } = await insertCapped(db, [open], { coalescing: true })
    if (refused.length > 0) throw await capacityError(db, refused)
    // Nothing inserted: another enqueue opened the job first; fold into it.
    if (inserted[0]) return { job: newJob<P>(open, spec, inserted[0]), deduped: false, coalesced: false }
  }
  throw new Error(`coalescing ${row.type}/${key} did not settle: the open job kept changing`)
}

/**
 * The error for a batch naming parents that are not live jobs of their rows'
 * stores (finished, cancelled or being cancelled, another store's, or never
 * existing: one error for all, so a store cannot probe other stores' ids).
 */
function parentError(rows: ReadonlyArray<jobs.NewJobRow>, missing: ReadonlyArray<jobs.MissingParent>): ValidationError {
  const first = missing[0]!
  const index = rows.findIndex((r) => r.parentId === first.parentId && r.storeId === first.storeId)
  return new ValidationError(
    `jobs[${index}].parentId: job ${first.parentId} is not a live job of store ${first.storeId} (finished, cancelled, being cancelled, or unknown)`,
    { index, field: 'parentId', reason: 'parent_not_live', parentIds: missing.map((m) => m.parentId) },
  )
}

/** How far back the retry-after hint looks at a store's completions. */
const RATE_WINDOW_MS = 60_000

/**
 * The error for stores over their live-job cap, with a retry-after hint: the
 * time the first store needs, at its completion rate over the last minute,
 * to free the places the batch lacks (1 s to 5 min; 1 min with no completions).
 */
async function capacityError(db: Executor, refused: ReadonlyArray<jobs.RefusedStore>): Promise<StoreCapacityError> {
  const first = refused[0]!
  const finished = await jobs.recentlyFinished(db, { storeId: first.storeId, windowMs: RATE_WINDOW_MS })
  const lacking = first.live + first.incoming - first.cap
  const perMs = finished / RATE_WINDOW_MS
  const retryAfterMs = perMs > 0 ? Math.min(300_000, Math.max(1_000, Math.ceil(lacking / perMs))) : 60_000
  return new StoreCapacityError(first, retryAfterMs, refused)
}

function toExecutor(target: EnqueueTarget): Executor {
  if ('selectFrom' in target) return target
  return fromPgClient(target)
}

/** Validates one spec and turns it into a row; throws ValidationError naming the field. */
function normalise<P>(spec: EnqueueSpec<P>, index: number, now: number): jobs.NewJobRow {
  const fail = (field: string, message: string): never => {
    throw new ValidationError(`jobs[${index}].${field}: ${message}`, { index, field })
  }
  if (typeof spec !== 'object' || spec === null) fail('', 'must be an object')
  if (typeof spec.type !== 'string' || !JOB_TYPE_NAME.test(spec.type) || spec.type.length > MAX_TYPE_LENGTH) {
    fail('type', 'must be a lowercase dotted name such as sync.inventory')
  }
  if (typeof spec.storeId !== 'string' || spec.storeId.length === 0 || spec.storeId.length > MAX_ID_LENGTH || !isStorableText(spec.storeId)) {
    fail('storeId', `must be a string of 1 to ${MAX_ID_LENGTH} characters`)
  }
  if (spec.userId !== undefined && (typeof spec.userId !== 'string' || spec.userId.length === 0 || spec.userId.length > MAX_ID_LENGTH || !isStorableText(spec.userId))) {
    fail('userId', `must be a string of 1 to ${MAX_ID_LENGTH} characters`)
  }
  if (spec.runAt !== undefined && spec.delayMs !== undefined) fail('runAt', 'give runAt or delayMs, not both')
  if (spec.runAt !== undefined && (!(spec.runAt instanceof Date) || Number.isNaN(spec.runAt.getTime()))) fail('runAt', 'must be a valid Date')
  if (spec.delayMs !== undefined && (!Number.isFinite(spec.delayMs) || spec.delayMs < 0)) fail('delayMs', 'must be a number >= 0')
  if (spec.maxAttempts !== undefined && (!Number.isInteger(spec.maxAttempts) || spec.maxAttempts < 1 || spec.maxAttempts > 1000)) {
    fail('maxAttempts', 'must be an integer from 1 to 1000')
  }
  if (spec.dedupeKey !== undefined && (typeof spec.dedupeKey !== 'string' || spec.dedupeKey.length === 0 || spec.dedupeKey.length > MAX_DEDUPE_KEY_LENGTH || !isStorableText(spec.dedupeKey))) {
    fail('dedupeKey', `must be a string of 1 to ${MAX_DEDUPE_KEY_LENGTH} characters`)
  }
  if (spec.cost !== undefined && (!Number.isFinite(spec.cost) || spec.cost <= 0 || spec.cost > 1e6)) fail('cost', 'must be a number > 0')
  if (spec.rateKey !== undefined && (typeof spec.rateKey !== 'string' || spec.rateKey.length === 0 || spec.rateKey.length > 255 || !isStorableText(spec.rateKey))) {
    fail('rateKey', 'must be a string of 1 to 255 characters')
  }
  if (spec.coalesceKey !== undefined && (typeof spec.coalesceKey !== 'string' || spec.coalesceKey.length === 0 || spec.coalesceKey.length > 255 || !isStorableText(spec.coalesceKey))) {
    fail('coalesceKey', 'must be a string of 1 to 255 characters')
  }
  if (spec.coalesceKey !== undefined && spec.dedupeKey !== undefined) fail('coalesceKey', 'give coalesceKey or dedupeKey, not both')
  if (spec.parentId !== undefined && !isBigintId(spec.parentId)) fail('parentId', 'must be a job id (a decimal string)')
  // A coalescing enqueue may fold into a job that already has another parent, or none.
  if (spec.parentId !== undefined && spec.coalesceKey !== undefined) fail('parentId', 'give parentId or coalesceKey, not both')
  if (spec.queue !== undefined && (typeof spec.queue !== 'string' || spec.queue.length === 0 || spec.queue.length > MAX_TYPE_LENGTH)) {
    fail('queue', 'must be a non-empty string')
  }
  const payload = spec.payload === undefined ? {} : spec.payload
  let payloadText: string | undefined
  try {
    payloadText = JSON.stringify(payload)
  } catch {
    payloadText = undefined
  }
  if (payloadText === undefined) return fail('payload', 'must be JSON-serialisable')
  const runAt = spec.runAt ?? (spec.delayMs !== undefined && spec.delayMs > 0 ? new Date(now + spec.delayMs) : null)
  return {
    type: spec.type,
    storeId: spec.storeId,
    userId: spec.userId ?? null,
    priority: priorityValue(spec.priority, index),
    runAt,
    maxAttempts: spec.maxAttempts ?? null,
    payload: payloadText,
    dedupeKey: spec.dedupeKey ?? null,
    queue: spec.queue ?? 'default',
    cost: spec.cost ?? null,
    rateKey: spec.rateKey ?? null,
    coalesceKey: spec.coalesceKey ?? null,
    parentId: spec.parentId ?? null,
  }
}

/**
 * A priority name or number as its stored smallint (urgent=1, high=2,
 * normal=5, low=10). Throws ValidationError for anything else.
 */
export function priorityValue(priority: Priority | undefined, index = 0): number {
  if (priority === undefined) return PRIORITIES.normal
  if (typeof priority === 'string' && priority in PRIORITIES) return PRIORITIES[priority as keyof typeof PRIORITIES]
  if (typeof priority === 'number' && Number.isInteger(priority) && priority >= 1 && priority <= 10) return priority
  throw new ValidationError(`jobs[${index}].priority: must be urgent, high, normal, low or an integer from 1 to 10`, {
    index,
    field: 'priority',
  })
}
