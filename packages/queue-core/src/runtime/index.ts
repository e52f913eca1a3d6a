export { createRootLogger, REDACT_PATHS } from './create-root-logger.ts'
export { onShutdownSignal } from './on-shutdown-signal.ts'
export { ConfigError, envInteger, envOneOf, isPostgresUrl, LOG_LEVELS, type Env, type LogLevel } from './env.ts'
