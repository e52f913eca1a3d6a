import { Type } from 'typebox'

/**
 * Payload of `install.plugin`: `{ pluginId, version }`. The store is never in
 * the payload: the handler takes it from the job.
 *
 * `pluginId` is a registry slug (lowercase, digits, `.`, `_`, `-`), so it is
 * safe as a URL path segment; `version` is semver-shaped
 * (`1.2.3`, `1.2.3-beta.1`, `1.2.3+build.5`).
 */
export const InstallPluginPayload = Type.Object(
  {
    pluginId: Type.String({ minLength: 1, maxLength: 128, pattern: '^[a-z0-9][a-z0-9._-]*$' }),
    version: Type.String({
      minLength: 5,
      maxLength: 64,
      pattern: '^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\\+[0-9A-Za-z.-]+)?$',
    }),
  },
  { additionalProperties: false },
)
