import { sql, type Kysely, type Transaction } from 'kysely'
import type { Database } from './database.ts'
import { preparedMarker } from './prepared.ts'
import { checkStoreId } from '../validate.ts'

/** The role store-key requests run as: NOLOGIN, no BYPASSRLS (infra/migrations/0013_store_row_security.sql). */
export const STORE_ROLE = 'backroom_store'

/** The transaction-local setting naming the one store {@link STORE_ROLE} may see. */
export const STORE_SETTING = 'backroom.store_id'

/** Tables whose rows {@link STORE_ROLE} sees and writes only for the store named (each has a `<table>_store_scope` policy). */
export const POLICED_TABLES = ['jobs', 'job_history', 'stores', 'store_pauses'] as const

/** Why store row security is not in effect. */
export type RowSecurityGap =
  /** The role does not exist: the migrating user could not create it (managed PostgreSQL). */
  | 'role_missing'
  /** The role exists but is a superuser or has BYPASSRLS: policies would not bind it. */
  | 'role_bypasses'
  /** Some policed table has row security off or no policy for the role (migration 0013 was skipped for it). */
  | 'tables_unpoliced'
  /** This connection's login may not switch to the role (not a member). */
  | 'cannot_switch'

/** What {@link storeRowSecurity} found. */
export interface StoreRowSecurity {
  readonly inEffect: boolean
  /** Null when in effect. */
  readonly gap: RowSecurityGap | null
  /** For the operator: what is missing and how to add it (no secrets). */
  readonly detail: string
}

/** Options of {@link withStoreScope} and {@link storeRowSecurity}. */
export interface StoreScopeOptions {
  /** The role to switch to (default {@link STORE_ROLE}); tests name a missing one. */
  readonly role?: string
}

/**
 * Runs `fn` in a transaction as {@link STORE_ROLE}, seeing only `storeId`'s
 * rows of the policed tables, whatever filters its statements carry. Both
 * the role and the store are set with `set_config(…, true)`: local to the
 * transaction, so a pooled connection is back to its login's role and no
 * store once it commits or rolls back, and nothing leaks to the next user
 * of the connection. Given a transaction, the scope holds in it until it ends.
 *
 * Everything `fn` runs must run on `trx` (a statement on the pool would run
 * as the login, unscoped). Throws when the role is missing or the login may
 * not switch to it: check {@link storeRowSecurity} at start-up first.
 *
 * @example
 * const page = await withStoreScope(db.kysely, 'store-42', (trx) => listJobs(trx, {}, { storeId: 'store-42' }))
 */
export async function withStoreScope<T>(
  db: Kysely<Database>,
  storeId: string,
  fn: (trx: Transaction<Database>) => Promise<T>,
  options: StoreScopeOptions = {},
): Promise<T> {
  checkStoreId(storeId)
  const role = options.role ?? STORE_ROLE
  const scoped = async (trx: Transaction<Database>): Promise<T> => {
    // One round trip for both; prepared, since every store request sends it.
    await sql`${sql.raw(preparedMarker('backroom_store_scope'))}
      select set_config('role', ${role}, true), set_config(${STORE_SETTING}, ${storeId}, true)`.execute(trx)
    return fn(trx)
  }
  return db.isTransaction ? scoped(db as Transaction<Database>) : db.transaction().execute(scoped)
}

/**
 * Whether {@link withStoreScope} really confines what it runs: the role
 * exists without bypass, every policed table has row security on and a
 * policy for it, and this pool's login may switch to it (tried in a
 * transaction that is rolled back). Errors other than a refused switch
 * (the database unavailable) are thrown.
 */
export async function storeRowSecurity(db: Kysely<Database>, options: StoreScopeOptions = {}): Promise<StoreRowSecurity> {
  const role = options.role ?? STORE_ROLE
  const found = await sql<{ bypasses: boolean; unpoliced: string[] }>`
    select r.rolsuper or r.rolbypassrls as bypasses,
           array(
             select t from unnest(${[...POLICED_TABLES]}::text[]) t
             where not exists (
               select 1 from pg_class c
               join pg_policy p on p.polrelid = c.oid and r.oid = any(p.polroles)
               where c.relname = t and c.relnamespace = current_schema()::regnamespace and c.relrowsecurity
             )
           ) as unpoliced
    from pg_roles r where r.rolname = ${role}
  `.execute(db)
  const row = found.rows[0]
  if (row === undefined) {
    return gap('role_missing', `role ${role} does not exist: an administrator creates it (create role ${role} nologin; grant ${role} to <api login>), then migration 0013 is run again as the tables' owner`)
  }
  if (row.bypasses) return gap('role_bypasses', `role ${role} is a superuser or has BYPASSRLS: alter role ${role} nosuperuser nobypassrls`)
  if (row.unpoliced.length > 0) return gap('tables_unpoliced', `no row security for ${role} on ${row.unpoliced.join(', ')}: run migration 0013 again as the tables' owner`)
  try {
    await db.transaction().execute(async (trx) => {
      await sql`select set_config('role', ${role}, true)`.execute(trx)
      // Undo whatever the probe did (nothing); rollback is how the callback ends.
      throw new ProbeDone()
    })
  } catch (err) {
    if (err instanceof ProbeDone) return { inEffect: true, gap: null, detail: `store requests run as ${role}` }
    // 42501 insufficient_privilege: "permission denied to set role".
    if ((err as { code?: string }).code === '42501') return gap('cannot_switch', `this login may not switch to ${role}: grant ${role} to <api login>`)
    throw err
  }
  throw new Error('unreachable: the probe transaction always throws')
}

/** Ends the switch probe's transaction by rolling it back. */
class ProbeDone extends Error {}

function gap(kind: RowSecurityGap, detail: string): StoreRowSecurity {
  return { inEffect: false, gap: kind, detail }
}
