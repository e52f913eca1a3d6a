/**
 * API process entry (`pnpm start:api`): migrates, listens on PORT (3000) on
 * every interface, and on SIGTERM stops accepting, finishes in-flight
 * requests, closes the pool and exits 0. Configuration: see config.ts.
 */
import { connect, migrate } from '@backroom/queue-core'
import { buildApp } from './app.ts'
import { loadConfig } from './config.ts'
import { exitOnStartupError } from './exit-on-startup-error.ts'
import { createRootLogger, onShutdownSignal } from '@backroom/queue-core/runtime'

try {
  const config = loadConfig(process.env)
  const log = createRootLogger({ service: 'api', level: config.logLevel })
  const db = connect({ connectionString: config.databaseUrl, max: config.dbPoolMax, min: config.dbPoolMin, applicationName: 'backroom-api' })
  const app = buildApp({ db, logger: log })
  const starting = (async () => {
    // Idempotent and advisory-locked: API and worker may both start at once.
    const applied = await migrate({ connectionString: config.databaseUrl })
    if (applied.length > 0) log.info({ migrations: applied }, 'migrations applied')
    await app.listen({ port: config.port, host: '0.0.0.0' })
  })()
  onShutdownSignal(log, async () => {
    await starting.catch(() => {})
    try {
      await app.close()
    } finally {
      await db.close()
    }
  })
  await starting.catch(async (err: unknown) => {
    await db.close()
    exitOnStartupError(err, log)
  })
} catch (err) {
  exitOnStartupError(err)
}
