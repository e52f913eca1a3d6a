import type { TestProject } from 'vitest/node'
import { migrate } from '../migrate.ts'
import { adminQuery, dropDatabase, startTestServer, uniqueDatabaseName, withDatabase } from './test-database.ts'

import './use-test-database.ts'

/**
 * Vitest global setup: one PostgreSQL server per test run and one migrated
 * template database; each test file clones the template (see useTestDatabase).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startTestServer()
  const template = uniqueDatabaseName('backroom_tmpl')
  await adminQuery(server.url, `create database "${template}"`)
  await migrate({ connectionString: withDatabase(server.url, template) })
  project.provide('backroomTestDb', { serverUrl: server.url, template, source: server.source })
  return async () => {
    await dropDatabase(server.url, template)
    await server.stop()
  }
}
