import { PermanentError } from '@backroom/queue-core'

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
}

/**
 * Reads the handler's settings from `env`. Read per run, not at startup: a
 * worker without the registry configured still runs every other job type,
 * and install jobs fail with a clear `not_configured` instead of retrying.
 *
 * @example
 * const config = readInstallPluginConfig(deps.env) // throws PermanentError('not_configured')
 */
export function readInstallPluginConfig(env: Readonly<Record<string, string | undefined>>): InstallPluginConfig {
  const raw = env.PLUGIN_REGISTRY_URL?.trim()
  if (!raw) throw notConfigured('PLUGIN_REGISTRY_URL is not set: the plugin registry endpoint is unknown')
  let registryUrl: URL
  try {
    registryUrl = new URL(raw)
  } catch {
    throw notConfigured('PLUGIN_REGISTRY_URL is not a valid URL')
  }
  if (registryUrl.protocol !== 'https:' && registryUrl.protocol !== 'http:') {
    throw notConfigured('PLUGIN_REGISTRY_URL must be an http(s) URL')
  }
  return {
    registryUrl,
    registryToken: env.PLUGIN_REGISTRY_TOKEN?.trim() || undefined,
    httpTimeoutMs: readMs(env, 'PLUGIN_HTTP_TIMEOUT_MS', DEFAULT_PLUGIN_HTTP_TIMEOUT_MS),
    downloadTimeoutMs: readMs(env, 'PLUGIN_DOWNLOAD_TIMEOUT_MS', DEFAULT_PLUGIN_DOWNLOAD_TIMEOUT_MS),
  }
}

function readMs(env: Readonly<Record<string, string | undefined>>, name: string, fallback: number): number {
  const raw = env[name]?.trim()
  if (!raw) return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value < 1 || value > 3_600_000) {
    throw notConfigured(`${name} must be a whole number of milliseconds between 1 and 3600000`)
  }
  return value
}

function notConfigured(message: string): PermanentError {
  return new PermanentError('not_configured', { message: `install.plugin: ${message}` })
}
