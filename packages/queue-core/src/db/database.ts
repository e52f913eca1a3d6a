import type { ColumnType, Generated, Kysely, Transaction } from 'kysely'

/** bigint columns arrive from `pg` as strings. */
type BigIntString = ColumnType<string, string | number | bigint, string | number | bigint>
type Json = ColumnType<unknown, string, string>

/** `jobs`: live work (infra/migrations/0001_queue_tables.sql). */
export interface JobsTable {
  id: Generated<string>
  type: string
  queue: Generated<string>
  store_id: string
  user_id: string | null
  priority: Generated<number>
  claim_priority: Generated<number>
  state: 'pending' | 'scheduled' | 'running'
  vtime: Generated<number>
  cost: Generated<number>
  run_at: Generated<Date>
  attempt: Generated<number>
  max_attempts: number | null
  payload: Json
  dedupe_key: string | null
  locked_by: string | null
  locked_until: Date | null
  lease_token: string | null
  cancel_requested: Generated<boolean>
  rate_key: string | null
  coalesce_key: string | null
  coalesced: Generated<number>
  /** The job this one belongs to (infra/migrations/0012_job_parents.sql); live rows only. */
  parent_id: BigIntString | null
  progress: Json | null
  errors: Generated<Json>
  created_at: Generated<Date>
  started_at: Date | null
}

/** `job_history`: finished jobs, partitioned by `finished_at`. */
export interface JobHistoryTable {
  id: BigIntString
  type: string
  queue: string
  store_id: string
  user_id: string | null
  priority: number
  state: 'completed' | 'failed' | 'cancelled'
  attempt: number
  max_attempts: number | null
  payload: Json
  dedupe_key: string | null
  progress: Json | null
  errors: Json
  result: Json | null
  run_at: Date
  created_at: Date
  started_at: Date | null
  finished_at: Generated<Date>
}

export interface StoresTable {
  store_id: string
  weight: Generated<number>
  vclock: Generated<number>
  created_at: Generated<Date>
  max_live_jobs: number | null
}

export interface JobTypesTable {
  type: string
  declared_cost: number | null
  cost: number | null
  max_running: number | null
  max_running_per_store: number | null
  rate_limited: Generated<boolean>
  coalesce_strategy: string | null
  coalesce_field: string | null
  coalesce_max_delay_ms: number | null
  coalesce_max_batch: number | null
  updated_at: Generated<Date>
}

export interface RateLimitsTable {
  key: string
  max_rate: number
  min_rate: number
  rate: number
  burst: number
  recovery_s: number
  tokens: number
  refreshed_at: Generated<Date>
  last_granted: Generated<number>
}

export interface StorePausesTable {
  store_id: string
  type: Generated<string>
  paused_at: Generated<Date>
}

export interface StoreTypeLimitsTable {
  store_id: string
  type: string
  max_running: number
}

export interface QueueClockTable {
  id: Generated<boolean>
  vtime: number
}

export interface ApiKeysTable {
  id: Generated<string>
  store_id: string | null
  label: Generated<string>
  token_hash: Buffer
  created_at: Generated<Date>
  revoked_at: Date | null
}

/** `api_key_audit`: key changes and hourly use counts (infra/migrations/0014_api_key_audit.sql). */
export interface ApiKeyAuditTable {
  id: Generated<string>
  /** A key id, or `admin` / `admin-previous` for the admin keys. */
  key_id: string
  store_id: string | null
  event: 'created' | 'revoked' | 'used'
  /** Who made a change; null on use rows. */
  actor: string | null
  /** When the change happened; the hour's start on use rows. */
  at: Date
  uses: BigIntString | null
  first_used_at: Date | null
  last_used_at: Date | null
}

export interface ApiKeySecretTable {
  id: Generated<boolean>
  secret: Buffer
}

/** `leader_lease`: the maintenance leader's lease, at most one row (infra/migrations/0011_leader_lease.sql). */
export interface LeaderLeaseTable {
  id: Generated<boolean>
  holder: string
  term: BigIntString
  acquired_at: Date
  expires_at: Date
}

export interface SchemaMigrationsTable {
  id: number
  name: string
  checksum: string
  applied_at: Generated<Date>
}

/** The queue's tables as Kysely sees them; must match infra/migrations (checked by a test). */
export interface Database {
  jobs: JobsTable
  job_history: JobHistoryTable
  stores: StoresTable
  job_types: JobTypesTable
  store_type_limits: StoreTypeLimitsTable
  store_pauses: StorePausesTable
  rate_limits: RateLimitsTable
  queue_clock: QueueClockTable
  api_keys: ApiKeysTable
  api_key_secret: ApiKeySecretTable
  api_key_audit: ApiKeyAuditTable
  leader_lease: LeaderLeaseTable
  schema_migrations: SchemaMigrationsTable
}

/** Anything queries can run on: the pool-backed Kysely or a caller's transaction. */
export type Executor = Kysely<Database> | Transaction<Database>
