import { sql, type RawBuilder } from 'kysely'
import type { Executor } from './database.ts'

/**
 * Who holds the maintenance leadership and in which term, as a statement
 * needs it to fence itself: it acts only while `leader_lease` still names
 * this holder and term and has not expired, and renews it for `ttlMs`.
 */
export interface LeaseFence {
  readonly holder: string
  readonly term: number
  readonly ttlMs: number
}

/** The answer of {@link acquireLease}. */
export type LeaseAttempt =
  | { readonly acquired: true; readonly term: number }
  | {
      readonly acquired: false
      /** The current holder. */
      readonly holder: string
      /** Milliseconds until its lease runs out unless renewed (0 when already due). */
      readonly expiresInMs: number
    }

/**
 * Takes the leader lease for `ttlMs` when it is free: no lease yet, its
 * expiry passed (by the database clock), or `holder` itself is still on
 * record (a leader that gave up locally, e.g. after failed renewals, and has
 * stopped its services since). Every grant starts a new term, one higher
 * than the last, so a statement fenced on the old term is refused from then on.
 *
 * Concurrent attempts serialize on the row: the insert's conflict branch
 * re-reads the row after the other transaction commits, so one attempt wins.
 *
 * Index: leader_lease_pkey (the table holds at most one row).
 */
export async function acquireLease(db: Executor, args: { holder: string; ttlMs: number }): Promise<LeaseAttempt> {
  const result = await sql<{ term: string | null; holder: string | null; expires_in_ms: number | null }>`
    with taken as (
      insert into leader_lease as l (id, holder, term, acquired_at, expires_at)
      values (true, ${args.holder}, 1, now(), now() + ${args.ttlMs} * interval '1 millisecond')
      on conflict (id) do update
        set holder = excluded.holder, term = l.term + 1, acquired_at = excluded.acquired_at, expires_at = excluded.expires_at
        where l.expires_at <= now() or l.holder = excluded.holder
      returning l.term
    )
    -- The lease as it was when the statement began: who holds it, and for how long.
    select (select term from taken)::text as term, cur.holder,
           greatest(0, extract(epoch from cur.expires_at - now()) * 1000)::float8 as expires_in_ms
    from (values (1)) as one(x) left join leader_lease cur on true
  `.execute(db)
  const row = result.rows[0]
  if (row?.term) return { acquired: true, term: Number(row.term) }
  // Not taken yet the row was missing at the start: another holder inserted it meanwhile.
  return { acquired: false, holder: row?.holder ?? '', expiresInMs: row?.expires_in_ms ?? 0 }
}

/**
 * Extends the lease by `ttlMs` from now if `fence` still holds it and it has
 * not expired. False means the lease is gone: a follower may hold it already.
 *
 * Index: none needed: the table has one row at most (leader_lease_pkey keeps it so).
 */
export async function renewLease(db: Executor, fence: LeaseFence): Promise<boolean> {
  const result = await sql<{ held: boolean }>`
    with lease as (${renewedLease(fence)})
    select exists (select 1 from lease) as held
  `.execute(db)
  return result.rows[0]?.held === true
}

/**
 * Ends the lease now, if `fence` still holds it, so a follower takes over on
 * its next attempt instead of waiting for the expiry.
 *
 * Index: none needed: the table has one row at most (leader_lease_pkey keeps it so).
 */
export async function releaseLease(db: Executor, fence: LeaseFence): Promise<void> {
  await sql`
    update leader_lease set expires_at = now()
    where holder = ${fence.holder} and term = ${fence.term} and expires_at > now()
  `.execute(db)
}

/**
 * The body of a `lease` CTE that renews the lease for `fence` and returns
 * one row while `fence` holds it, none once it does not. A maintenance
 * statement that runs its work only when this returned a row is fenced: the
 * row lock it takes also keeps a follower from taking over until the
 * statement commits, so the old and the new leader never act at once.
 * With `fence` null it returns no row and changes nothing.
 *
 * Index: none needed: the table has one row at most.
 */
export function renewedLease(fence: LeaseFence | null): RawBuilder<unknown> {
  return sql`
    update leader_lease set expires_at = now() + ${fence?.ttlMs ?? 0} * interval '1 millisecond'
    where holder = ${fence?.holder ?? null}::text and term = ${fence?.term ?? null}::bigint and expires_at > now()
    returning term`
}
