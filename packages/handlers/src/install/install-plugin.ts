import { defineHandler, PermanentError, snooze, type Handler, type HandlerContext } from '@backroom/queue-core'
import type { Static } from 'typebox'
import type { HandlerDeps } from '../lib/deps.ts'
import { sendUpstream } from '../lib/http-client.ts'
import { idempotencyKey } from '../lib/idempotency-key.ts'
import { urlGuardFor } from '../lib/url-guard.ts'
import { downloadPluginArchive, type VerifiedArchive } from './download-plugin-archive.ts'
import { fetchPluginManifest, onRegistryOrigin, registryAuth, type PluginManifest } from './fetch-plugin-manifest.ts'
import { readInstallPluginConfig, type InstallPluginConfig } from './install-plugin-config.ts'
import { InstallPluginPayload } from './install-plugin-payload.ts'
import { withInstallLock } from './install-lock.ts'
import * as installs from './plugin-installations.ts'

/**
 * How long a job waits before trying again when another job is installing
 * the same plugin for the same store. A snooze spends no attempt, so a long
 * install elsewhere only delays this one.
 */
export const INSTALL_BUSY_SNOOZE_MS = 2_000

/** What an install job returns (kept as the job's result). */
export interface InstallPluginResult {
  readonly installationId: string
  readonly version: string
  readonly outcome: 'installed' | 'upgraded' | 'already_installed'
  /** The version that was live before, on an upgrade. */
  readonly previousVersion?: string
}

type Payload = Static<typeof InstallPluginPayload>

/**
 * `install.plugin`: installs version `version` of plugin `pluginId` for the
 * job's store, in steps that each run once per job even across retries:
 *
 * 1. `manifest`: GET the version's manifest from PLUGIN_REGISTRY_URL;
 * 2. `download`: stream the archive through SHA-256 and check it (a mismatch
 *    fails the job for good: a tampered package is never installed);
 * 3. `record`: upsert `shop.plugin_installations` with the manifest and digest;
 * 4. `setup_hook`: POST the manifest's setupHookUrl with an Idempotency-Key,
 *    then mark the row `installed`.
 *
 * Each finished step's output is journaled by job id, so a retry (after a
 * hook 500, a crash…) resumes at the step that failed. Installing the live
 * version again is a no-op; any other version replaces it (upgrade or
 * downgrade), the old one staying live until the new hook succeeds. Jobs for
 * the same (store, plugin) run one at a time under an advisory lock; the
 * others snooze.
 *
 * Env: PLUGIN_REGISTRY_URL (required, else `not_configured`),
 * PLUGIN_REGISTRY_TOKEN, PLUGIN_HTTP_TIMEOUT_MS, PLUGIN_DOWNLOAD_TIMEOUT_MS.
 *
 * @example
 * const installPlugin = createInstallPlugin(handlerDeps(db, process.env))
 * await enqueue(db.kysely, { type: 'install.plugin', storeId: 'store-1', payload: { pluginId: 'reviews', version: '2.1.0' } })
 */
export function createInstallPlugin(deps: HandlerDeps): Handler<typeof InstallPluginPayload> {
  const shop = deps.shop.withTables<installs.InstallTables>()
  return defineHandler({
    type: 'install.plugin',
    payload: InstallPluginPayload,
    maxAttempts: 10,
    timeoutMs: 15 * 60_000,
    async run(payload, ctx) {
      const config = readInstallPluginConfig(deps.env, urlGuardFor(deps))
      const lockKey = `backroom:install.plugin:${ctx.job.storeId}:${payload.pluginId}`
      const run = await withInstallLock(deps.db.pool, lockKey, () => install(shop, config, payload, ctx))
      if (run.acquired) return run.value
      ctx.log.warn({ pluginId: payload.pluginId, snoozeMs: INSTALL_BUSY_SNOOZE_MS }, 'plugin install busy elsewhere')
      throw snooze(INSTALL_BUSY_SNOOZE_MS)
    },
  })
}

/** The steps, run while holding the (store, plugin) lock. */
async function install(
  shop: installs.InstallDbView,
  config: InstallPluginConfig,
  payload: Payload,
  ctx: HandlerContext<Payload>,
): Promise<InstallPluginResult> {
  const { job, log } = ctx
  const { pluginId, version } = payload
  const existing = await installs.findInstallation(shop, { storeId: job.storeId, pluginId })
  if (existing?.state === 'installed' && existing.installedVersion === version) {
    // A retry after the row went live but before the journal was cleared lands here too.
    await installs.clearJournal(shop, job.id)
    log.info({ pluginId, version, installationId: existing.id }, 'plugin already installed')
    return { installationId: existing.id, version, outcome: 'already_installed' }
  }
  const journal = await installs.loadJournal(shop, job.id)
  if (journal.size > 0) log.info({ pluginId, version, doneSteps: [...journal.keys()] }, 'plugin install resumed')
  if (journal.has('record') && existing?.version !== version) {
    // Another job installed a different version since this one recorded its own.
    await installs.clearJournal(shop, job.id)
    throw new PermanentError('install_superseded', {
      message: 'a later install of this plugin replaced this version before its setup hook ran',
      details: { pluginId, version, current: existing?.version ?? null },
    })
  }

  /** Runs a step once per job: a journaled step returns its recorded output. */
  const step = async <T>(name: installs.InstallStep, work: () => Promise<T>): Promise<T> => {
    if (journal.has(name)) return journal.get(name) as T
    ctx.signal.throwIfAborted()
    await ctx.progress({ step: name })
    const output = await work()
    await installs.recordStep(shop, { jobId: job.id, storeId: job.storeId, step: name, output })
    return output
  }

  let installationId: string | undefined
  try {
    const manifest = await step<PluginManifest>('manifest', () => fetchPluginManifest(ctx, config, payload))
    const archive = await step<VerifiedArchive>('download', () =>
      downloadPluginArchive(ctx, manifest, {
        timeoutMs: config.downloadTimeoutMs,
        headers: registryAuth(config, manifest.archiveUrl),
        guard: config.urlGuard,
        untrustedUrl: !onRegistryOrigin(config, manifest.archiveUrl),
      }),
    )
    installationId = await step('record', () =>
      installs.recordInstallation(shop, { storeId: job.storeId, jobId: job.id, manifest, sha256: archive.sha256, sizeBytes: archive.sizeBytes }),
    )
    const id = installationId
    if (manifest.setupHookUrl) {
      const hookUrl = manifest.setupHookUrl
      await step('setup_hook', () => callSetupHook(ctx, config, { url: hookUrl, pluginId, version, installationId: id }))
    }
    if (!(await installs.markInstalled(shop, { id, version }))) {
      throw new PermanentError('install_superseded', {
        message: 'a later install of this plugin replaced this version before it went live',
        details: { pluginId, version },
      })
    }
    await installs.clearJournal(shop, job.id)
    const previousVersion = existing?.installedVersion ?? undefined
    log.info({ pluginId, version, previousVersion, installationId: id, sizeBytes: archive.sizeBytes }, 'plugin installed')
    return previousVersion
      ? { installationId: id, version, outcome: 'upgraded', previousVersion }
      : { installationId: id, version, outcome: 'installed' }
  } catch (err) {
    // A permanent failure ends the job: record it on the row and drop the journal (a manual retry starts over).
    if (err instanceof PermanentError) {
      if (installationId) await installs.markFailed(shop, { id: installationId, version, code: err.code })
      await installs.clearJournal(shop, job.id)
    }
    throw err
  }
}

/**
 * POSTs `{ storeId, pluginId, version, installationId }` to the plugin's
 * setup hook. The Idempotency-Key is the same on every attempt of the job,
 * so a hook that honours it sets the plugin up once. The registry token is
 * never sent here: the hook belongs to the plugin's author, and so does its
 * URL (its failures are generic unless it is on the registry's origin).
 */
async function callSetupHook(
  ctx: HandlerContext<Payload>,
  config: InstallPluginConfig,
  hook: { readonly url: string; readonly pluginId: string; readonly version: string; readonly installationId: string },
): Promise<{ readonly status: number }> {
  const res = await sendUpstream(ctx, {
    service: 'plugin-setup-hook',
    url: hook.url,
    guard: config.urlGuard,
    untrustedUrl: !onRegistryOrigin(config, hook.url),
    method: 'POST',
    body: { storeId: ctx.job.storeId, pluginId: hook.pluginId, version: hook.version, installationId: hook.installationId },
    idempotencyKey: idempotencyKey(ctx.job, 'setup-hook'),
    timeoutMs: config.httpTimeoutMs,
  })
  // The hook's answer carries nothing we keep; release the connection.
  await res.body?.cancel()
  return { status: res.status }
}
