import type {} from 'vitest'
import { afterAll, beforeAll, inject } from 'vitest'
import { connect, type Db } from '../db/connect.ts'
import { createDatabaseFromTemplate, dropDatabase } from './test-database.ts'

declare module 'vitest' {
  export interface ProvidedContext {
    /** Set by the global setup: the test server and its migrated template database. */
    backroomTestDb: { serverUrl: string; template: string; source: string }
  }
}

/** A migrated database of this test file's own. */
export interface TestDatabase {
  /** Its connection string (for child processes, listeners, migrators). */
  readonly url: string
  /** The server's maintenance connection string. */
  readonly serverUrl: string
  /** A pool on it. */
  readonly db: Db
}

/**
 * Gives the calling test file a fresh database cloned from the run's
 * migrated template, with a pool on it; dropped after the file's tests.
 *
 * @example
 * const t = useTestDatabase()
 * it('enqueues', async () => { await enqueue(t.db.kysely, { type: 'a.b', storeId: 's' }) })
 */
export function useTestDatabase(options: { poolMax?: number } = {}): TestDatabase {
  let state: { url: string; name: string; serverUrl: string; db: Db } | null = null
  beforeAll(async () => {
    const { serverUrl, template } = inject('backroomTestDb')
    const { url, name } = await createDatabaseFromTemplate(serverUrl, template)
    state = { url, name, serverUrl, db: connect({ connectionString: url, max: options.poolMax ?? 10 }) }
  })
  afterAll(async () => {
    if (!state) return
    await state.db.close()
    await dropDatabase(state.serverUrl, state.name)
  })
  const get = () => {
    if (!state) throw new Error('useTestDatabase() is only ready inside tests and hooks')
    return state
  }
  return {
    get url() {
      return get().url
    },
    get serverUrl() {
      return get().serverUrl
    },
    get db() {
      return get().db
    },
  }
}
