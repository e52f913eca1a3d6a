import { PermanentError } from '@backroom/queue-core'
import { Type, type Static } from 'typebox'
import { callUpstreamJson, type CallContext } from '../lib/http-client.ts'
import type { InstallPluginConfig } from './install-plugin-config.ts'

/** Largest archive the handler downloads, whatever the manifest says. */
export const MAX_PLUGIN_ARCHIVE_BYTES = 50 * 1024 * 1024

const HttpUrl = Type.String({ minLength: 8, maxLength: 2048, pattern: '^https?://' })

/**
 * The registry's manifest of one plugin version. Unknown fields are allowed
 * (the registry may add some) and dropped: only these are kept.
 */
export const PluginManifest = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 128 }),
  version: Type.String({ minLength: 1, maxLength: 64 }),
  archiveUrl: HttpUrl,
  sha256: Type.String({ pattern: '^[0-9a-fA-F]{64}$' }),
  sizeBytes: Type.Integer({ minimum: 0 }),
  setupHookUrl: Type.Optional(HttpUrl),
  permissions: Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { maxItems: 200 }),
})
export type PluginManifest = Static<typeof PluginManifest>

/**
 * `GET {registry}/v1/plugins/{pluginId}/versions/{version}/manifest`, checked
 * against {@link PluginManifest}. A manifest for another plugin or version, or
 * one announcing an archive over {@link MAX_PLUGIN_ARCHIVE_BYTES}, fails the
 * job permanently: asking again would get the same answer.
 */
export async function fetchPluginManifest(
  ctx: CallContext,
  config: InstallPluginConfig,
  target: { readonly pluginId: string; readonly version: string },
): Promise<PluginManifest> {
  const path = `v1/plugins/${encodeURIComponent(target.pluginId)}/versions/${encodeURIComponent(target.version)}/manifest`
  const body = await callUpstreamJson(
    ctx,
    {
      service: 'plugin-registry',
      url: new URL(path, withTrailingSlash(config.registryUrl)),
      guard: config.urlGuard,
      headers: registryAuth(config),
      timeoutMs: config.httpTimeoutMs,
    },
    PluginManifest,
  )
  if (body.id !== target.pluginId || body.version !== target.version) {
    throw new PermanentError('manifest_mismatch', {
      message: 'the registry answered with the manifest of another plugin or version',
      details: { expected: target, got: { id: body.id, version: body.version } },
    })
  }
  if (body.sizeBytes > MAX_PLUGIN_ARCHIVE_BYTES) {
    throw new PermanentError('archive_too_large', {
      message: `the plugin archive is over the ${MAX_PLUGIN_ARCHIVE_BYTES}-byte limit`,
      details: { sizeBytes: body.sizeBytes, limit: MAX_PLUGIN_ARCHIVE_BYTES },
    })
  }
  // Rebuilt field by field: the stored manifest holds what we checked and nothing else.
  return {
    id: body.id,
    version: body.version,
    archiveUrl: body.archiveUrl,
    sha256: body.sha256.toLowerCase(),
    sizeBytes: body.sizeBytes,
    ...(body.setupHookUrl ? { setupHookUrl: body.setupHookUrl } : {}),
    permissions: [...body.permissions],
  }
}

/**
 * The registry's Authorization header, for URLs on the registry's own origin
 * only: an archive on a CDN or a plugin's hook must never see the token.
 */
export function registryAuth(config: InstallPluginConfig, url: string | URL = config.registryUrl): Record<string, string> {
  if (!config.registryToken || !onRegistryOrigin(config, url)) return {}
  return { authorization: `Bearer ${config.registryToken}` }
}

/**
 * Whether a URL is on the registry's own origin (which the operator chose).
 * A manifest's other URLs are its author's to name: their failures reach
 * the job only as generic `fetch_failed` / `fetch_refused`.
 */
export function onRegistryOrigin(config: InstallPluginConfig, url: string | URL): boolean {
  return URL.canParse(String(url)) && new URL(url).origin === config.registryUrl.origin
}

/** `new URL('v1/…', base)` keeps a base path (`https://h/registry/`) only when it ends in a slash. */
function withTrailingSlash(url: URL): URL {
  if (url.pathname.endsWith('/')) return url
  const copy = new URL(url)
  copy.pathname = `${copy.pathname}/`
  return copy
}
