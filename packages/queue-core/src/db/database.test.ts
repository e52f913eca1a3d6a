import { describe, expect, it } from 'vitest'
import { useTestDatabase } from '../testing/use-test-database.ts'
import type { Database } from './database.ts'

const t = useTestDatabase()

/** Columns the Kysely interface declares, per table: kept in step with the migrations by this test. */
const declared: { [K in keyof Database]: ReadonlyArray<keyof Database[K]> } = {
  jobs: [
    'id', 'type', 'queue', 'store_id', 'user_id', 'priority', 'claim_priority', 'state', 'vtime', 'cost', 'run_at', 'attempt', 'max_attempts',
    'payload', 'dedupe_key', 'locked_by', 'locked_until', 'lease_token', 'cancel_requested', 'rate_key', 'coalesce_key', 'coalesced', 'progress', 'errors', 'created_at', 'started_at',
    'parent_id',
  ],
  job_history: [
    'id', 'type', 'queue', 'store_id', 'user_id', 'priority', 'state', 'attempt', 'max_attempts', 'payload', 'dedupe_key',
    'progress', 'errors', 'result', 'run_at', 'created_at', 'started_at', 'finished_at',
  ],
  stores: ['store_id', 'weight', 'vclock', 'created_at', 'max_live_jobs'],
  job_types: ['type', 'declared_cost', 'cost', 'max_running', 'max_running_per_store', 'updated_at', 'rate_limited',
    'coalesce_strategy', 'coalesce_field', 'coalesce_max_delay_ms', 'coalesce_max_batch'],
  store_pauses: ['store_id', 'type', 'paused_at'],
  rate_limits: ['key', 'max_rate', 'min_rate', 'rate', 'burst', 'recovery_s', 'tokens', 'refreshed_at', 'last_granted'],
  store_type_limits: ['store_id', 'type', 'max_running'],
  queue_clock: ['id', 'vtime'],
  api_keys: ['id', 'store_id', 'label', 'token_hash', 'created_at', 'revoked_at'],
  api_key_secret: ['id', 'secret'],
  api_key_audit: ['id', 'key_id', 'store_id', 'event', 'actor', 'at', 'uses', 'first_used_at', 'last_used_at'],
  leader_lease: ['id', 'holder', 'term', 'acquired_at', 'expires_at'],
  schema_migrations: ['id', 'name', 'checksum', 'applied_at'],
}

describe('Database interface', () => {
  it('matches the migrated schema column for column', async () => {
    for (const [table, columns] of Object.entries(declared)) {
      const { rows } = await t.db.pool.query<{ column_name: string }>(
        `select column_name from information_schema.columns where table_schema = 'public' and table_name = $1`,
        [table],
      )
      expect(rows.map((r) => r.column_name).sort(), table).toEqual([...columns].sort())
    }
  })
})
