import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from './config.ts'

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    expect(loadConfig({ DATABASE_URL: 'postgres://u:p@h/db' })).toEqual({
      databaseUrl: 'postgres://u:p@h/db',
      port: 3000,
      dbPoolMax: 10,
      dbPoolMin: 0,
      dbStatementTimeoutMs: 15_000,
      dbPoolAcquireTimeoutMs: 5_000,
      logLevel: 'info',
      redisUrl: null,
      cronSecret: null,
      adminKey: null,
      previousAdminKey: null,
      keyAuditRetentionDays: 90,
      batchLimit: 1_000,
      bodyLimit: 256 * 1024,
      storeRate: 100,
      storeMaxPriority: 'normal',
      metricsKey: null,
      metricsCacheMs: 5_000,
      uploadQuotaBytes: 1024 * 1024 * 1024,
      uploadRatePerMinute: 10,
      uploadRetentionHours: 72,
    })
  })

  it('reads the metrics, priority and upload settings, refusing bad values by name', () => {
    const env = {
      DATABASE_URL: 'postgres://h/db',
      API_STORE_MAX_PRIORITY: 'High',
      METRICS_KEY: 'm'.repeat(16),
      METRICS_CACHE_MS: '0',
      API_UPLOAD_STORE_QUOTA_BYTES: '1048576',
      API_UPLOAD_RATE_PER_MINUTE: '3',
      UPLOAD_RETENTION_HOURS: '24',
    }
    expect(loadConfig(env)).toMatchObject({
      storeMaxPriority: 'high',
      metricsKey: 'm'.repeat(16),
      metricsCacheMs: 0,
      uploadQuotaBytes: 1_048_576,
      uploadRatePerMinute: 3,
      uploadRetentionHours: 24,
    })
    let caught: unknown
    try {
      loadConfig({
        DATABASE_URL: 'postgres://h/db',
        API_STORE_MAX_PRIORITY: 'asap',
        METRICS_KEY: 'short-metrics',
        METRICS_CACHE_MS: '-1',
        API_UPLOAD_STORE_QUOTA_BYTES: '0',
        API_UPLOAD_RATE_PER_MINUTE: '0',
        UPLOAD_RETENTION_HOURS: '0',
      })
    } catch (err) {
      caught = err
    }
    expect((caught as ConfigError).problems).toEqual([
      'API_STORE_MAX_PRIORITY must be one of urgent, high, normal, low',
      'METRICS_KEY must be at least 16 characters',
      'METRICS_CACHE_MS must be an integer >= 0',
      'API_UPLOAD_STORE_QUOTA_BYTES must be an integer >= 1',
      'API_UPLOAD_RATE_PER_MINUTE must be an integer >= 1',
      'UPLOAD_RETENTION_HOURS must be an integer >= 1',
    ])
    expect(JSON.stringify((caught as ConfigError).problems)).not.toContain('short-metrics')
  })

  it('reads the API settings and refuses short secrets without echoing them', () => {
    const env = {
      DATABASE_URL: 'postgres://h/db',
      REDIS_URL: 'redis://127.0.0.1:6379',
      CRON_SECRET: 'c'.repeat(16),
      BACKROOM_ADMIN_KEY: 'a'.repeat(32),
      API_BATCH_LIMIT: '50',
      API_BODY_LIMIT: '4096',
      API_STORE_RATE: '7',
    }
    expect(loadConfig(env)).toMatchObject({
      redisUrl: 'redis://127.0.0.1:6379',
      cronSecret: 'c'.repeat(16),
      adminKey: 'a'.repeat(32),
      batchLimit: 50,
      bodyLimit: 4096,
      storeRate: 7,
    })
    let caught: unknown
    try {
      loadConfig({ DATABASE_URL: 'postgres://h/db', CRON_SECRET: 'short-secret', BACKROOM_ADMIN_KEY: 'tiny-admin-key', REDIS_URL: 'http://x' })
    } catch (err) {
      caught = err
    }
    expect((caught as ConfigError).problems).toEqual([
      'REDIS_URL must be a redis:// or rediss:// URL',
      'CRON_SECRET must be at least 16 characters',
      'BACKROOM_ADMIN_KEY must be at least 32 characters',
    ])
    expect(JSON.stringify((caught as ConfigError).problems)).not.toContain('tiny-admin-key')
  })

  it('accepts a previous admin key beside the current one during a rotation, and the audit retention', () => {
    const env = { DATABASE_URL: 'postgres://h/db', BACKROOM_ADMIN_KEY: 'b'.repeat(40), BACKROOM_ADMIN_KEY_PREVIOUS: 'a'.repeat(32), API_KEY_AUDIT_RETENTION_DAYS: '7' }
    expect(loadConfig(env)).toMatchObject({ adminKey: 'b'.repeat(40), previousAdminKey: 'a'.repeat(32), keyAuditRetentionDays: 7 })
  })

  it('refuses a previous admin key that is short, equal to the current one or alone, naming the rule and not the value', () => {
    const problemsOf = (env: Record<string, string>): string[] => {
      try {
        loadConfig({ DATABASE_URL: 'postgres://h/db', ...env })
      } catch (err) {
        expect(JSON.stringify((err as ConfigError).problems)).not.toMatch(/previous-admin|x{32}/)
        return [...(err as ConfigError).problems]
      }
      return []
    }
    expect(problemsOf({ BACKROOM_ADMIN_KEY: 'x'.repeat(32), BACKROOM_ADMIN_KEY_PREVIOUS: 'short-previous-admin' })).toEqual([
      'BACKROOM_ADMIN_KEY_PREVIOUS must be at least 32 characters',
    ])
    expect(problemsOf({ BACKROOM_ADMIN_KEY: 'x'.repeat(32), BACKROOM_ADMIN_KEY_PREVIOUS: ` ${'x'.repeat(32)} ` })).toEqual([
      'BACKROOM_ADMIN_KEY_PREVIOUS must differ from BACKROOM_ADMIN_KEY (it is the key being rotated out)',
    ])
    expect(problemsOf({ BACKROOM_ADMIN_KEY_PREVIOUS: 'x'.repeat(32) })).toEqual([
      'BACKROOM_ADMIN_KEY_PREVIOUS is set without BACKROOM_ADMIN_KEY: set the new admin key too (the previous one is accepted only beside it)',
    ])
    expect(problemsOf({ API_KEY_AUDIT_RETENTION_DAYS: '0' })).toEqual(['API_KEY_AUDIT_RETENTION_DAYS must be an integer >= 1'])
    expect(problemsOf({ API_KEY_AUDIT_RETENTION_DAYS: '36501' })).toEqual(['API_KEY_AUDIT_RETENTION_DAYS must be at most 36500'])
  })

  it('reads PORT, DB_POOL_MAX, DB_POOL_MIN and LOG_LEVEL', () => {
    const env = { DATABASE_URL: 'postgresql://h/db', PORT: '8080', DB_POOL_MAX: '3', DB_POOL_MIN: '1', LOG_LEVEL: 'warn' }
    expect(loadConfig(env)).toMatchObject({ port: 8080, dbPoolMax: 3, dbPoolMin: 1, logLevel: 'warn' })
  })

  it('reports every bad variable at once without echoing values', () => {
    let caught: unknown
    try {
      loadConfig({ PORT: '70000', DB_POOL_MAX: 'ten', LOG_LEVEL: 'chatty' })
    } catch (err) {
      caught = err
    }
    expect(caught).toBeInstanceOf(ConfigError)
    expect((caught as ConfigError).problems).toEqual([
      'DATABASE_URL is required (a postgres:// connection string)',
      'PORT must be at most 65535',
      'DB_POOL_MAX must be an integer >= 1',
      'LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent',
    ])
  })
})
