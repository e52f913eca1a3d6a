export { startEmbeddedPostgres, freePort, type RunningPostgres } from './embedded-postgres.ts'
