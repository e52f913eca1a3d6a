import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from './config.ts'

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    expect(loadConfig({ DATABASE_URL: 'postgres://u:p@h/db' })).toEqual({
      databaseUrl: 'postgres://u:p@h/db',
      port: 3000,
      dbPoolMax: 10,
      dbPoolMin: 0,
      logLevel: 'info',
    })
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
