/**
 * Worker process entry (`pnpm start:worker`): runs jobs until SIGTERM, then
 * drains and exits 0; or exits 1 with `shutdown failed`, naming the jobs
 * (`err.jobIds`) it could not hand back because the database did not answer:
 * they stay running until their leases expire. Configuration: see config.ts.
 */
import { configureJobTypes, createHandlers, handlerDeps, jobTypes, migrateShop } from '@backroom/handlers'
import { loadConfig } from './config.ts'
import { exitOnStartupError } from './exit-on-startup-error.ts'
import { startWorker } from './start-worker.ts'
import { createRootLogger, onShutdownSignal } from '@backroom/queue-core/runtime'

try {
  const config = loadConfig(process.env, { knownTypes: jobTypes })
  const log = createRootLogger({ service: 'worker', level: config.logLevel })
  const starting = startWorker({
    config,
    handlers: (db) => createHandlers(handlerDeps(db, process.env)),
    migrations: [migrateShop],
    prepare: (db) => configureJobTypes(db.kysely),
    log,
  })
  // Registered before start-up finishes: a signal during migrations still drains cleanly.
  onShutdownSignal(log, async () => (await starting).stop())
  await starting.catch((err: unknown) => exitOnStartupError(err, log))
} catch (err) {
  exitOnStartupError(err)
}
