export { createRootLogger, REDACT_PATHS } from './create-root-logger.ts'
export { onShutdownSignal } from './on-shutdown-signal.ts'
