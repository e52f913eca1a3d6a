export { startEmbeddedPostgres, freePort, type RunningPostgres } from '../dev/embedded-postgres.ts'
export {
  startTestServer,
  withDatabase,
  adminQuery,
  uniqueDatabaseName,
  createDatabaseFromTemplate,
  dropDatabase,
  type TestServer,
} from './test-database.ts'
export { useTestDatabase, type TestDatabase } from './use-test-database.ts'
export { insertJob, waitFor } from './fixtures.ts'
export { startTcpProxy, type TcpProxy, type TcpProxyCounts, type TcpProxyTarget } from './tcp-proxy.ts'
export { recordFaultFigures } from './fault-figures.ts'
