import { sql, type RawBuilder } from 'kysely'

/**
 * The state of a job that is becoming runnable: `paused` while a pause covers
 * its store (all types, `type` '') or its store and type, else `pending`.
 * Every statement that makes a job pending uses it (enqueue, promotion,
 * rescue, retry, release), so no path slips a paused store's job into the
 * claim index.
 *
 * The uncorrelated `exists` comes first: with no pause anywhere (the usual
 * case) it is evaluated once per statement and no row looks up store_pauses.
 */
export function runnableState(store: RawBuilder<unknown>, type: RawBuilder<unknown>): RawBuilder<'pending' | 'paused'> {
  return sql<'pending' | 'paused'>`(case
    when not exists (select 1 from store_pauses) then 'pending'
    when exists (select 1 from store_pauses p where p.store_id = ${store} and p.type in ('', ${type})) then 'paused'
    else 'pending' end)`
}
