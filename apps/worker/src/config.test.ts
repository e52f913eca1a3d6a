import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from './config.ts'

const url = 'postgres://backroom:s3cret@db.internal:5432/backroom'

function problemsOf(env: Record<string, string>): ReadonlyArray<string> {
  try {
    loadConfig(env, { knownTypes: ['system.canary'] })
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    return (err as ConfigError).problems
  }
  throw new Error('expected a ConfigError')
}

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    expect(loadConfig({ DATABASE_URL: url })).toEqual({
      databaseUrl: url,
      concurrency: 10,
      prefetch: 0,
      types: null,
      dbPoolMax: 10,
      dbPoolMin: 0,
      dbStatementTimeoutMs: 15_000,
      dbPoolAcquireTimeoutMs: 10_000,
      logLevel: 'info',
      shutdownGraceMs: 10_000,
      metricsPort: null,
    })
    expect(loadConfig({ DATABASE_URL: url, WORKER_METRICS_PORT: '9464' }).metricsPort).toBe(9464)
    expect(() => loadConfig({ DATABASE_URL: url, WORKER_METRICS_PORT: '70000' })).toThrow(ConfigError)
  })

  it('reads every variable of the contract', () => {
    const config = loadConfig(
      {
        DATABASE_URL: url,
        WORKER_CONCURRENCY: '32',
        WORKER_TYPES: ' system.canary , ,system.canary',
        DB_POOL_MAX: '4',
        DB_POOL_MIN: '1',
        LOG_LEVEL: 'DEBUG',
        WORKER_SHUTDOWN_GRACE_MS: '0',
      },
      { knownTypes: ['system.canary'] },
    )
    expect(config).toMatchObject({ concurrency: 32, types: ['system.canary'], dbPoolMax: 4, dbPoolMin: 1, logLevel: 'debug', shutdownGraceMs: 0 })
  })

  it('requires DATABASE_URL', () => {
    expect(problemsOf({})).toEqual(['DATABASE_URL is required (a postgres:// connection string)'])
  })

  it('reports every bad variable at once without echoing values', () => {
    const problems = problemsOf({
      DATABASE_URL: 'mysql://root:hunter2@host/db',
      WORKER_CONCURRENCY: '0',
      DB_POOL_MAX: '2',
      DB_POOL_MIN: '3',
      LOG_LEVEL: 'loud',
      WORKER_SHUTDOWN_GRACE_MS: '1.5',
      WORKER_TYPES: 'system.canary,nope.missing',
    })
    expect(problems).toEqual([
      'DATABASE_URL must be a postgres:// or postgresql:// URL',
      'WORKER_CONCURRENCY must be an integer >= 1',
      'DB_POOL_MIN must not exceed DB_POOL_MAX',
      'WORKER_SHUTDOWN_GRACE_MS must be an integer >= 0',
      'LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent',
      'WORKER_TYPES names job types without a handler: nope.missing',
    ])
    expect(problems.join(' ')).not.toContain('hunter2')
  })
})
