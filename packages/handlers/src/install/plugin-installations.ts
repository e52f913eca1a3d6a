import { sql, type ColumnType, type Generated, type Kysely } from 'kysely'
import type { ShopDatabase } from '../lib/shop-database.ts'
import type { PluginManifest } from './fetch-plugin-manifest.ts'

/** States of an installation row: recorded and waiting for its hook, live, or its hook refused. */
export const INSTALLATION_STATES = ['installing', 'installed', 'failed'] as const
export type InstallationState = (typeof INSTALLATION_STATES)[number]

/** An installation row's next step: `setup_hook` until the hook succeeds, then `done`. */
export const INSTALLATION_STEPS = ['setup_hook', 'done'] as const
export type InstallationStep = (typeof INSTALLATION_STEPS)[number]

/** Steps of one install run, in order, as journaled in `shop.plugin_install_steps`. */
export const INSTALL_STEPS = ['manifest', 'download', 'record', 'setup_hook'] as const
export type InstallStep = (typeof INSTALL_STEPS)[number]

/** `shop.plugin_installations` (infra/migrations/shop/0005). */
export interface PluginInstallationTable {
  /** bigint identity; pg returns int8 as a string. */
  readonly id: Generated<string>
  readonly store_id: string
  readonly plugin_id: string
  /** The version this row's manifest and digest describe. */
  version: string
  /** The version that is live; during an upgrade, still the old one until the hook succeeds. */
  installed_version: string | null
  state: InstallationState
  step: InstallationStep
  manifest: ColumnType<PluginManifest, string, string>
  archive_sha256: string
  archive_size_bytes: ColumnType<string, number, number>
  /** The job that last wrote the row. */
  job_id: string | null
  last_error_code: string | null
  created_at: Generated<Date>
  updated_at: Generated<Date>
  installed_at: Date | null
}

/** `shop.plugin_install_steps` (infra/migrations/shop/0005): one row per finished step of a job. */
export interface PluginInstallStepTable {
  readonly job_id: string
  readonly step: InstallStep
  readonly store_id: string
  readonly output: ColumnType<unknown, string, string>
  readonly created_at: Generated<Date>
}

/**
 * This folder's tables. A type alias, not an interface: `withTables<T>()`
 * needs a type with an implicit index signature.
 */
export type InstallTables = {
  'shop.plugin_installations': PluginInstallationTable
  'shop.plugin_install_steps': PluginInstallStepTable
}

/** The shop view widened with this folder's tables. */
export type InstallDatabase = ShopDatabase & InstallTables

/** An installation as the handler reads it. */
export interface PluginInstallation {
  readonly id: string
  readonly version: string
  readonly installedVersion: string | null
  readonly state: InstallationState
  readonly step: InstallationStep
  readonly manifest: PluginManifest
}

/** The store's installation of a plugin, if any. */
export async function findInstallation(
  db: Kysely<InstallDatabase>,
  key: { readonly storeId: string; readonly pluginId: string },
): Promise<PluginInstallation | undefined> {
  const row = await db
    .selectFrom('shop.plugin_installations')
    .select(['id', 'version', 'installed_version', 'state', 'step', 'manifest'])
    .where('store_id', '=', key.storeId)
    .where('plugin_id', '=', key.pluginId)
    .executeTakeFirst()
  if (!row) return undefined
  return { id: row.id, version: row.version, installedVersion: row.installed_version, state: row.state, step: row.step, manifest: row.manifest }
}

/**
 * Records a verified version as the store's installation of the plugin,
 * waiting for its setup hook. An existing row (older version, or an earlier
 * try) is taken over: last request wins; `installed_version` keeps naming
 * what is live until {@link markInstalled}. Idempotent. Returns the row id.
 */
export async function recordInstallation(
  db: Kysely<InstallDatabase>,
  input: {
    readonly storeId: string
    readonly jobId: string
    readonly manifest: PluginManifest
    readonly sha256: string
    readonly sizeBytes: number
  },
): Promise<string> {
  const values = {
    version: input.manifest.version,
    state: 'installing',
    step: 'setup_hook',
    manifest: JSON.stringify(input.manifest),
    archive_sha256: input.sha256,
    archive_size_bytes: input.sizeBytes,
    job_id: input.jobId,
    last_error_code: null,
  } as const
  const row = await db
    .insertInto('shop.plugin_installations')
    .values({ store_id: input.storeId, plugin_id: input.manifest.id, ...values })
    .onConflict((oc) => oc.columns(['store_id', 'plugin_id']).doUpdateSet({ ...values, updated_at: sql`now()` }))
    .returning('id')
    .executeTakeFirstOrThrow()
  return row.id
}

/**
 * Marks the row live at `version`. Matches only while the row still
 * describes that version, so a run overtaken by a newer install changes
 * nothing; returns whether it matched.
 */
export async function markInstalled(db: Kysely<InstallDatabase>, input: { readonly id: string; readonly version: string }): Promise<boolean> {
  const res = await db
    .updateTable('shop.plugin_installations')
    .set({ state: 'installed', step: 'done', installed_version: input.version, installed_at: sql`now()`, updated_at: sql`now()` })
    .where('id', '=', input.id)
    .where('version', '=', input.version)
    .executeTakeFirst()
  return res.numUpdatedRows > 0n
}

/** Marks the row's pending version failed (its hook refused it); the live version is unchanged. */
export async function markFailed(
  db: Kysely<InstallDatabase>,
  input: { readonly id: string; readonly version: string; readonly code: string },
): Promise<void> {
  await db
    .updateTable('shop.plugin_installations')
    .set({ state: 'failed', last_error_code: input.code, updated_at: sql`now()` })
    .where('id', '=', input.id)
    .where('version', '=', input.version)
    .where('state', '=', 'installing')
    .execute()
}

/** Outputs of the job's finished steps. */
export async function loadJournal(db: Kysely<InstallDatabase>, jobId: string): Promise<Map<InstallStep, unknown>> {
  const rows = await db.selectFrom('shop.plugin_install_steps').select(['step', 'output']).where('job_id', '=', jobId).execute()
  return new Map(rows.map((r) => [r.step, r.output]))
}

/** Journals a finished step. A step already journaled (a racing duplicate) keeps its first output. */
export async function recordStep(
  db: Kysely<InstallDatabase>,
  input: { readonly jobId: string; readonly storeId: string; readonly step: InstallStep; readonly output: unknown },
): Promise<void> {
  await db
    .insertInto('shop.plugin_install_steps')
    .values({ job_id: input.jobId, store_id: input.storeId, step: input.step, output: JSON.stringify(input.output ?? null) })
    .onConflict((oc) => oc.columns(['job_id', 'step']).doNothing())
    .execute()
}

/** Forgets the job's steps once it finished, so the journal holds only runs that may resume. */
export async function clearJournal(db: Kysely<InstallDatabase>, jobId: string): Promise<void> {
  await db.deleteFrom('shop.plugin_install_steps').where('job_id', '=', jobId).execute()
}

/** The Kysely view the handler works on. */
export type InstallDbView = Kysely<InstallDatabase>
