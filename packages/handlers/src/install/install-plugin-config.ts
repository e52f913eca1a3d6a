import { providerEnv } from '../lib/provider-env.ts'
import type { UrlGuard } from '../lib/url-guard.ts'

/** Per-request limit for the manifest and the setup hook when PLUGIN_HTTP_TIMEOUT_MS is unset. */
export const DEFAULT_PLUGIN_HTTP_TIMEOUT_MS = 15_000

/** Limit for a whole archive download (headers and body) when PLUGIN_DOWNLOAD_TIMEOUT_MS is unset. */
export const DEFAULT_PLUGIN_DOWNLOAD_TIMEOUT_MS = 120_000

/** What `install.plugin` reads from the environment. */
export interface InstallPluginConfig {
  /** PLUGIN_REGISTRY_URL (required): base of `/v1/plugins/…`. */
  readonly registryUrl: URL
  /** PLUGIN_REGISTRY_TOKEN (optional): sent as a Bearer token to the registry's origin only. */
  readonly registryToken: string | undefined
  /** PLUGIN_HTTP_TIMEOUT_MS (optional). */
  readonly httpTimeoutMs: number
  /** PLUGIN_DOWNLOAD_TIMEOUT_MS (optional). */
  readonly downloadTimeoutMs: number
  /** The guard the manifest, archive and hook requests pass (`urlGuardFor(deps)`). */
  readonly urlGuard: UrlGuard
}

/**
 * Reads the handler's settings from `env`. Read per run, not at startup: a
 * worker without the registry configured still runs every other job type,
 * and install jobs fail with a clear `not_configured` instead of retrying.
 *
 * @example
 * const config = readInstallPluginConfig(deps.env, urlGuardFor(deps)) // throws PermanentError('not_configured')
 */
export function readInstallPluginConfig(env: Readonly<Record<string, string | undefined>>, urlGuard: UrlGuard): InstallPluginConfig {
  const read = providerEnv(env, 'install.plugin')
  return {
    registryUrl: new URL(read.httpUrl('PLUGIN_REGISTRY_URL', 'the plugin registry endpoint is unknown')),
    registryToken: read.optional('PLUGIN_REGISTRY_TOKEN'),
    httpTimeoutMs: read.ms('PLUGIN_HTTP_TIMEOUT_MS', DEFAULT_PLUGIN_HTTP_TIMEOUT_MS),
    downloadTimeoutMs: read.ms('PLUGIN_DOWNLOAD_TIMEOUT_MS', DEFAULT_PLUGIN_DOWNLOAD_TIMEOUT_MS),
    urlGuard,
  }
}
