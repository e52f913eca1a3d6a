import type { Db } from '@backroom/queue-core'
import type { Kysely } from 'kysely'
import type { HostResolver } from './host-resolver.ts'
import type { ShopDatabase } from './shop-database.ts'
import { shopView } from './shop-view.ts'

/**
 * What handlers are built from: the queue's database (enqueue child jobs,
 * read rate limits), a view of the domain tables on the same pool, and the
 * environment their clients read their endpoints and keys from.
 */
export interface HandlerDeps {
  readonly db: Db
  readonly shop: Kysely<ShopDatabase>
  /** Provider endpoints and credentials (process.env in the worker). */
  readonly env: Readonly<Record<string, string | undefined>>
  /**
   * How the URL guard resolves host names (see urlGuardFor): the system's
   * resolver when unset. Tests point it at a DNS server of their own.
   */
  readonly resolveHost?: HostResolver
}

/**
 * Handler dependencies over an open queue database. The shop view shares the
 * queue's pool and is not closed separately: closing `db` ends both.
 * `options.resolveHost` replaces the system's resolver for the URL guard.
 *
 * @example
 * const handlers = createHandlers(handlerDeps(db, process.env))
 */
export function handlerDeps(
  db: Db,
  env: Readonly<Record<string, string | undefined>>,
  options: { readonly resolveHost?: HostResolver } = {},
): HandlerDeps {
  return { db, shop: shopView(db), env, resolveHost: options.resolveHost }
}
