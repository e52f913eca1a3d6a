import type { Scope } from './admin.ts'
import type { Executor } from './db/database.ts'
import * as list from './db/list-jobs.ts'
import { toJob, type JobRow } from './db/rows.ts'
import { ValidationError } from './errors.ts'
import { FINAL_STATES, JOB_STATES, LIVE_STATES, type FinalState, type Job, type JobState, type LiveState } from './types.ts'
import { isBigintId, isStorableText, JOB_TYPE_NAME, MAX_ID_LENGTH, MAX_TYPE_LENGTH } from './validate.ts'

/** Page size when `limit` is not given. */
export const DEFAULT_LIST_LIMIT = 50
/** Largest page `listJobs` returns. */
export const MAX_LIST_LIMIT = 100

/** What {@link listJobs} selects; every field is optional. */
export interface ListJobsFilters {
  readonly state?: JobState
  readonly type?: string
  readonly storeId?: string
  readonly userId?: string
  /** Jobs created at or after this instant. */
  readonly createdAfter?: Date
  /** Jobs created strictly before this instant. */
  readonly createdBefore?: Date
  /** 1 to {@link MAX_LIST_LIMIT}; default {@link DEFAULT_LIST_LIMIT}. */
  readonly limit?: number
  /** The previous page's `nextCursor`. */
  readonly cursor?: string
}

/** One page of jobs, newest first. */
export interface JobPage {
  readonly jobs: ReadonlyArray<Job>
  /** Pass as `cursor` for the next page; null on the last page. */
  readonly nextCursor: string | null
}

const PLATFORM: Scope = { storeId: null }

/**
 * Lists jobs, live and finished together, newest first (by id, which follows
 * enqueue order), one page at a time. Keyset pagination: the cursor names the
 * last id returned, so pages stay stable while jobs are added or finish, and
 * a deep page costs what the first does. A job that finishes between two
 * page reads moves from `jobs` to `job_history` under the same id, so it is
 * neither repeated nor skipped.
 *
 * `scope` restricts to one store; a `storeId` filter naming another store
 * then matches nothing (an empty page, as for a store without jobs).
 * Throws {@link ValidationError} for a bad filter, limit or cursor.
 *
 * @example
 * const first = await listJobs(db.kysely, { storeId: 'store-42', state: 'failed', limit: 20 })
 * const next = first.nextCursor ? await listJobs(db.kysely, { storeId: 'store-42', state: 'failed', cursor: first.nextCursor }) : null
 */
export async function listJobs(db: Executor, filters: ListJobsFilters = {}, scope: Scope = PLATFORM): Promise<JobPage> {
  const limit = checkFilters(filters)
  const beforeId = filters.cursor === undefined ? null : decodeCursor(filters.cursor)
  if (scope.storeId !== null && filters.storeId !== undefined && filters.storeId !== scope.storeId) {
    return { jobs: [], nextCursor: null }
  }
  const base: list.ListFilters = {
    storeId: scope.storeId ?? filters.storeId ?? null,
    type: filters.type ?? null,
    userId: filters.userId ?? null,
    createdAfter: filters.createdAfter ?? null,
    createdBefore: filters.createdBefore ?? null,
    beforeId,
    // One more than the page: whether it comes back says if another page follows.
    take: limit + 1,
  }
  const state = filters.state
  const liveStates = state === undefined ? null : isLive(state) ? [state] : undefined
  const finalStates = state === undefined ? null : isFinal(state) ? [state] : undefined
  const [live, finished] = await Promise.all([
    liveStates === undefined ? [] : list.listLive(db, base, liveStates),
    finalStates === undefined ? [] : list.listFinished(db, base, finalStates),
  ])
  const rows = mergeNewestFirst(live, finished).slice(0, limit + 1)
  const more = rows.length > limit
  const page = more ? rows.slice(0, limit) : rows
  return { jobs: page.map((row) => toJob(row)), nextCursor: more ? encodeCursor(String(page[page.length - 1]!.id)) : null }
}

/** The cursor for "jobs older than this id": opaque to callers, versioned so its form may change. */
export function encodeCursor(lastId: string): string {
  return Buffer.from(`v1:${lastId}`, 'utf8').toString('base64url')
}

/** The id a cursor names; ValidationError for anything {@link encodeCursor} did not make. */
export function decodeCursor(cursor: string): string {
  const text = typeof cursor === 'string' && cursor.length <= 64 && /^[A-Za-z0-9_-]+$/.test(cursor) ? Buffer.from(cursor, 'base64url').toString('utf8') : ''
  const match = /^v1:(\d+)$/.exec(text)
  if (!match || !isBigintId(match[1])) throw new ValidationError('cursor: not a cursor from a previous page', { field: 'cursor' })
  return match[1]!
}

/** Both lists are sorted newest first already; ids are bigints as decimal strings. */
function mergeNewestFirst(a: ReadonlyArray<JobRow>, b: ReadonlyArray<JobRow>): JobRow[] {
  return [...a, ...b].sort((x, y) => compareIdsDesc(String(x.id), String(y.id)))
}

function compareIdsDesc(x: string, y: string): number {
  if (x.length !== y.length) return y.length - x.length
  return x < y ? 1 : x > y ? -1 : 0
}

function isLive(state: JobState): state is LiveState {
  return (LIVE_STATES as ReadonlyArray<string>).includes(state)
}

function isFinal(state: JobState): state is FinalState {
  return (FINAL_STATES as ReadonlyArray<string>).includes(state)
}

/** Throws ValidationError naming the first bad field; returns the page size. */
function checkFilters(filters: ListJobsFilters): number {
  const fail = (field: string, message: string): never => {
    throw new ValidationError(`${field}: ${message}`, { field })
  }
  if (filters.state !== undefined && !(JOB_STATES as ReadonlyArray<string>).includes(filters.state)) {
    fail('state', `must be one of ${JOB_STATES.join(', ')}`)
  }
  if (filters.type !== undefined && (typeof filters.type !== 'string' || !JOB_TYPE_NAME.test(filters.type) || filters.type.length > MAX_TYPE_LENGTH)) {
    fail('type', 'must be a lowercase dotted name such as sync.inventory')
  }
  for (const field of ['storeId', 'userId'] as const) {
    const value = filters[field]
    if (value !== undefined && (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID_LENGTH || !isStorableText(value))) {
      fail(field, `must be a string of 1 to ${MAX_ID_LENGTH} characters`)
    }
  }
  for (const field of ['createdAfter', 'createdBefore'] as const) {
    const value = filters[field]
    if (value !== undefined && (!(value instanceof Date) || Number.isNaN(value.getTime()))) fail(field, 'must be a valid date')
  }
  const limit = filters.limit ?? DEFAULT_LIST_LIMIT
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) fail('limit', `must be an integer from 1 to ${MAX_LIST_LIMIT}`)
  return limit
}
