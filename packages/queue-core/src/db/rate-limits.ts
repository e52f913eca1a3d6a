import { sql, type RawBuilder } from 'kysely'
import type { Executor } from './database.ts'

/*
 * Token buckets per key, in `rate_limits`. Every statement here computes the
 * bucket "now" from the row it updates (available tokens refilled at the
 * current rate, the rate recovered additively toward max_rate), so a
 * concurrent update of the same key makes PostgreSQL re-evaluate against the
 * newer row: tokens are never spent twice, across any number of processes.
 * A row refreshed "in the future" (after a 429) holds nothing until then.
 */

/** Seconds since the row was last refreshed (negative while a Retry-After pause lasts). */
const elapsed = (r: string) => sql.raw(`extract(epoch from now() - ${r}.refreshed_at)`)

/** Tokens available now. */
export const available = (r: string): RawBuilder<number> =>
  sql<number>`(case when now() < ${sql.raw(r)}.refreshed_at then 0
    else least(${sql.raw(r)}.burst, ${sql.raw(r)}.tokens + ${sql.raw(r)}.rate * ${elapsed(r)}) end)`

/** The rate now: additive recovery toward max_rate over recovery_s seconds. */
export const recoveredRate = (r: string): RawBuilder<number> =>
  sql<number>`(case when now() < ${sql.raw(r)}.refreshed_at then ${sql.raw(r)}.rate
    else least(${sql.raw(r)}.max_rate, ${sql.raw(r)}.rate + ${sql.raw(r)}.max_rate / ${sql.raw(r)}.recovery_s * ${elapsed(r)}) end)`

/** Milliseconds until the bucket holds `n` tokens (at least 1): after a Retry-After pause, or at the current rate. */
export const msUntilTokens = (r: string, n: number): RawBuilder<number> =>
  sql<number>`(case when now() < ${sql.raw(r)}.refreshed_at then extract(epoch from ${sql.raw(r)}.refreshed_at - now()) * 1000
    else greatest(1, (${n}::float8 - ${available(r)}) / ${recoveredRate(r)} * 1000) end)::float8`

/** Creates or changes a bucket; a new one starts full, at its full rate. */
export async function upsertRateLimit(
  db: Executor,
  args: { key: string; perSecond: number; burst: number; minPerSecond: number; recoverySeconds: number },
): Promise<void> {
  await sql`
    insert into rate_limits (key, max_rate, min_rate, rate, burst, recovery_s, tokens)
    values (${args.key}, ${args.perSecond}, ${args.minPerSecond}, ${args.perSecond}, ${args.burst}, ${args.recoverySeconds}, ${args.burst})
    on conflict (key) do update set
      max_rate = excluded.max_rate, min_rate = excluded.min_rate, burst = excluded.burst, recovery_s = excluded.recovery_s,
      rate = least(excluded.max_rate, greatest(excluded.min_rate, rate_limits.rate)),
      tokens = least(rate_limits.tokens, excluded.burst)
  `.execute(db)
}

/** Removes a bucket (its key is unlimited again). */
export async function deleteRateLimit(db: Executor, key: string): Promise<boolean> {
  const result = await sql`delete from rate_limits where key = ${key}`.execute(db)
  return Number(result.numAffectedRows ?? 0) > 0
}

/** A bucket as it stands now. */
export interface BucketRow {
  readonly key: string
  readonly max_rate: number
  readonly min_rate: number
  readonly rate_now: number
  readonly burst: number
  readonly available: number
  readonly blocked_ms: number
}

/** Reads a bucket (computed for now, nothing written). */
export async function readBucket(db: Executor, key: string): Promise<BucketRow | undefined> {
  const result = await sql<BucketRow>`
    select key, max_rate, min_rate, burst, ${recoveredRate('r')} as rate_now, ${available('r')} as available,
           greatest(0, extract(epoch from r.refreshed_at - now()) * 1000)::float8 as blocked_ms
    from rate_limits r where key = ${key}
  `.execute(db)
  return result.rows[0]
}

/**
 * Takes `n` tokens from a bucket if it has them. Returns `took`; when not,
 * `waitMs` says when it will (null: no bucket for the key, i.e. unlimited).
 */
export async function takeTokens(db: Executor, args: { key: string; n: number }): Promise<{ took: boolean; waitMs: number | null }> {
  const result = await sql<{ took: number; wait_ms: number | null }>`
    with taken as (
      update rate_limits r
      set tokens = ${available('r')} - ${args.n}, rate = ${recoveredRate('r')}, refreshed_at = now()
      where r.key = ${args.key} and now() >= r.refreshed_at and ${available('r')} >= ${args.n}
      returning 1
    )
    select (select count(*) from taken)::int as took,
           (select ${msUntilTokens('r', args.n)} from rate_limits r where r.key = ${args.key}) as wait_ms
  `.execute(db)
  const row = result.rows[0]
  return { took: (row?.took ?? 0) > 0, waitMs: row?.wait_ms ?? null }
}

/**
 * The remote side said 429: halve the key's rate (not below its minimum),
 * empty the bucket and hold it shut for `retryAfterMs`. Returns the new rate,
 * or null when the key has no bucket.
 */
export async function throttle(db: Executor, args: { key: string; retryAfterMs: number }): Promise<number | null> {
  const result = await sql<{ rate: number }>`
    update rate_limits r
    set rate = greatest(r.min_rate, ${recoveredRate('r')} * 0.5), tokens = 0,
        refreshed_at = greatest(r.refreshed_at, now() + ${args.retryAfterMs} * interval '1 millisecond')
    where r.key = ${args.key}
    returning r.rate
  `.execute(db)
  return result.rows[0]?.rate ?? null
}
