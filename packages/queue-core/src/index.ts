export * from './types.ts'
export {
  PermanentError,
  SnoozeSignal,
  snooze,
  JobNotFoundError,
  LeaseLostError,
  ValidationError,
  InvalidStateError,
  StoreCapacityError,
  coerceError,
} from './errors.ts'
export {
  DEFAULT_LEASE_MS,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_CONCURRENCY,
  DEFAULT_PREFETCH,
  DEFAULT_POLL_INTERVAL_MS,
  DEFAULT_POLL_ONLY_INTERVAL_MS,
  DEFAULT_SHUTDOWN_GRACE_MS,
  DEFAULT_TIMEOUT_MS,
  NOTIFY_CHANNEL,
  DEFAULT_AGING_STEP,
  DEFAULT_AGING_INTERVAL_MS,
} from './config.ts'
export { connect, fromPgClient, isDatabaseUnavailable, type ConnectOptions, type Db } from './db/connect.ts'
export type { Database, Executor } from './db/database.ts'
export { enqueue, enqueueMany, priorityValue, type EnqueueTarget } from './enqueue.ts'
export { getJob, cancelJob, retryJob, type Scope } from './admin.ts'
export {
  withStoreScope,
  storeRowSecurity,
  STORE_ROLE,
  STORE_SETTING,
  POLICED_TABLES,
  type StoreRowSecurity,
  type RowSecurityGap,
  type StoreScopeOptions,
} from './db/store-scope.ts'
export { listJobs, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, type ListJobsFilters, type JobPage } from './list-jobs.ts'
export {
  pauseStore,
  resumeStore,
  cancelStoreJobs,
  retryStoreJobs,
  DEFAULT_BULK_LIMIT,
  MAX_BULK_LIMIT,
  type StoreOpOptions,
  type StoreOpResult,
  type CancellableState,
} from './store-ops.ts'
export { setStoreWeight, setStoreLiveJobCap, configureJobType, setStoreTypeLimit } from './settings.ts'
export type { JobTypeColumns } from './db/settings.ts'
export {
  setRateLimit,
  removeRateLimit,
  getRateLimit,
  parseRetryAfter,
  type RateLimitOptions,
  type RateLimitState,
  type HandlerRateLimits,
} from './rate-limits.ts'
export { createApiKey, authenticateApiKey, revokeApiKey, type ApiPrincipal, type CreatedApiKey } from './api-keys.ts'
export {
  listApiKeyEvents,
  recordApiKeyUses,
  deleteExpiredApiKeyAudit,
  checkActor,
  ADMIN_KEY_IDS,
  UNKNOWN_ACTOR,
  DEFAULT_AUDIT_PAGE,
  MAX_AUDIT_PAGE,
  type AdminKeyId,
  type ApiKeyActor,
  type ApiKeyEvent,
  type ApiKeyEventPage,
  type ApiKeyUseCount,
} from './api-key-audit.ts'
export { fairnessStats, type FairnessStatsOptions, type StoreFairness } from './stats.ts'
export { explainClaim } from './db/claim.ts'
export { nextRunAt } from './retry.ts'
export { defineHandler, createRegistry, type Handler, type HandlerContext, type HandlerDefinition, type HandlerRegistry } from './handler.ts'
export { migrate, readMigrations, MigrationChecksumError, DEFAULT_MIGRATIONS_DIR, type MigrateOptions } from './migrate.ts'
export { createWorkerPool, type WorkerPool, type WorkerPoolOptions } from './worker/worker-pool.ts'
export type { RunOutcome } from './worker/executor.ts'
export { createRescuer } from './maintenance/rescuer.ts'
export { createPromoter } from './maintenance/promoter.ts'
export { createAger } from './maintenance/ager.ts'
export { createRetention } from './maintenance/retention.ts'
export { createVacuumer } from './maintenance/vacuumer.ts'
export type { MaintenanceService } from './maintenance/service.ts'
export {
  queueHealth,
  alertsOf,
  HEALTH_ALERTS,
  DEFAULT_BACKLOG_THRESHOLD,
  DEFAULT_OLDEST_PENDING_MS,
  DEFAULT_LONG_RUNNING_MS,
  DEFAULT_HEALTH_STORE_LIMIT,
  MAX_HEALTH_STORE_LIMIT,
  type HealthAlert,
  type HealthThresholds,
  type HealthFigures,
  type QueueHealth,
  type QueueHealthOptions,
} from './queue-health.ts'
export { queueDepth, DEFAULT_QUEUE_DEPTH_TIMEOUT_MS, type TypeDepth, type QueueDepthOptions } from './queue-depth.ts'
export { liveJobReferences, MAX_REFERENCE_CHECK, type JobReference, type LiveJobReferencesOptions } from './job-references.ts'
export {
  drainWithinBudget,
  DEFAULT_DRAIN_CONCURRENCY,
  DEFAULT_DRAIN_LEASE_MARGIN_MS,
  DEFAULT_RUN_ESTIMATE_MS,
  DEFAULT_ESTIMATE_WINDOW_MS,
  DEFAULT_ESTIMATE_PERCENTILE,
  type DrainOptions,
  type DrainResult,
} from './drain-within-budget.ts'
