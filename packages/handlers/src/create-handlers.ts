import type { Handler } from '@backroom/queue-core'
import type { HandlerDeps } from './lib/deps.ts'
import { canary } from './system/canary.ts'

/**
 * Every job type's handler, built over the worker's database and
 * environment. A new job type adds its folder and one line here.
 *
 * @example
 * const handlers = createHandlers(handlerDeps(db, process.env))
 */
export function createHandlers(_deps: HandlerDeps): ReadonlyArray<Handler> {
  return [canary]
}
