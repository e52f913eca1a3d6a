import { storeRowSecurity, withStoreScope, type Db, type Executor } from '@backroom/queue-core'
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'

/** How a route wants its database work run. */
export interface WithDbOptions {
  /**
   * All statements in one transaction, whoever the key is (an enqueue that
   * may take several statements). Store-key work is always in one: the
   * scope lives in a transaction.
   */
  readonly transaction?: boolean
}

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * Runs the route's database work as the request's key may do it. A
     * store key's work runs in a transaction as the row-secured store role,
     * seeing only its own store's rows whatever its statements filter on
     * (queue-core's withStoreScope); a platform key's work runs on the pool
     * as before, in a transaction when asked. Everything `fn` runs must go
     * through the executor it is given.
     */
    withDb<T>(fn: (db: Executor) => Promise<T>, options?: WithDbOptions): Promise<T>
  }
}

/** Options of {@link storeScopePlugin}. */
export interface StoreScopeOptions {
  readonly db: Db
  /** The role store-key work runs as (default queue-core's STORE_ROLE); tests name a missing one. */
  readonly role?: string
}

/**
 * Decorates every request with {@link FastifyRequest.withDb}. Whether row
 * security is in effect (the role exists without bypass, the tables have
 * their policies, this login may switch to it) is checked once, when the app
 * is ready. When it is not (a managed PostgreSQL where migrations could not
 * create the role), store-key work runs on the query filters alone and the
 * app says so with a warning (`row_security_off`) naming what is missing;
 * it keeps serving rather than refuse every store. When the check cannot
 * run (the database unreachable at start-up), the first store request runs
 * it again, and fails as any request does while the database is away.
 * Auth (the key lookup) runs before any of this, as the login.
 */
export const storeScopePlugin = fp<StoreScopeOptions>(async (app, options) => {
  const kysely = options.db.kysely
  const role = options.role === undefined ? {} : { role: options.role }
  let checked: Promise<boolean> | null = null

  function inEffect(): Promise<boolean> {
    checked ??= storeRowSecurity(kysely, role).then(
      (found) => {
        if (found.inEffect) app.log.info({ detail: found.detail }, 'store row security in effect')
        else app.log.warn({ code: 'row_security_off', gap: found.gap, detail: found.detail }, 'store row security is not in effect: store requests rely on their query filters alone')
        return found.inEffect
      },
      (err: unknown) => {
        checked = null
        throw err
      },
    )
    return checked
  }

  app.addHook('onReady', async () => {
    await inEffect().catch((err: unknown) => {
      app.log.warn({ err, code: 'row_security_unchecked' }, 'could not check store row security at start-up; the first store request checks again')
    })
  })

  app.decorateRequest('withDb', async function withDb<T>(this: FastifyRequest, fn: (db: Executor) => Promise<T>, opts: WithDbOptions = {}): Promise<T> {
    const storeId = this.principal?.storeId ?? null
    if (storeId !== null && (await inEffect())) return withStoreScope(kysely, storeId, fn, role)
    return opts.transaction === true ? kysely.transaction().execute(fn) : fn(kysely)
  })
})
