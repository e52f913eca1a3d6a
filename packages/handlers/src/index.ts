import { createRegistry, type Handler, type HandlerRegistry } from '@backroom/queue-core'
import { canary } from './system/canary.ts'

/** Every job type's handler; the worker runs these. */
export const handlers: ReadonlyArray<Handler> = [canary]

/** The handlers by type. */
export const registry: HandlerRegistry = createRegistry(handlers)

export { canary }
