import { createHash } from 'node:crypto'
import { PermanentError, type HandlerContext } from '@backroom/queue-core'
import { sendUpstream } from '../lib/http-client.ts'
import { UpstreamError } from '../lib/upstream-error.ts'
import type { UrlGuard } from '../lib/url-guard.ts'
import { MAX_PLUGIN_ARCHIVE_BYTES, type PluginManifest } from './fetch-plugin-manifest.ts'

/** What a verified download leaves behind: the digest and size, never the bytes. */
export interface VerifiedArchive {
  /** Lowercase hex SHA-256 of the bytes received; equal to the manifest's. */
  readonly sha256: string
  readonly sizeBytes: number
}

/** Progress is written at most this often during a download (each write is a fenced UPDATE). */
const PROGRESS_EVERY_MS = 1_000

/**
 * Streams the manifest's archive through SHA-256 without holding it in
 * memory, and checks it against the manifest. The size is capped at the
 * manifest's `sizeBytes` (itself capped when the manifest was read), so a
 * server that sends more is cut off as soon as it does.
 *
 * Integrity failures are permanent (`size_mismatch`, `checksum_mismatch`):
 * a corrupt or tampered package must never be installed, and retrying would
 * fetch the same bytes. A stall or a dropped connection mid-body is an
 * UpstreamError, retried through the queue; `timeoutMs` bounds the whole
 * download, headers and body. The URL passes `guard` (every redirect too);
 * `untrustedUrl` (an archive off the registry's origin) makes its failures
 * generic, as sendUpstream describes.
 */
export async function downloadPluginArchive(
  ctx: Pick<HandlerContext, 'signal' | 'rateLimits' | 'progress'>,
  manifest: PluginManifest,
  options: {
    readonly timeoutMs: number
    readonly headers?: Readonly<Record<string, string>>
    readonly guard: UrlGuard
    readonly untrustedUrl: boolean
  },
): Promise<VerifiedArchive> {
  const res = await sendUpstream(ctx, {
    service: 'plugin-archive',
    url: manifest.archiveUrl,
    guard: options.guard,
    untrustedUrl: options.untrustedUrl,
    headers: { accept: 'application/octet-stream', ...options.headers },
    timeoutMs: options.timeoutMs,
    // The manifest's size is checked below with its own error; this is the hard ceiling.
    maxBytes: MAX_PLUGIN_ARCHIVE_BYTES,
  })
  const opaque = options.untrustedUrl
  if (!res.body) throw new UpstreamError('plugin-archive', 'malformed_response', { status: res.status, message: 'plugin-archive: empty body', opaque })
  const hash = createHash('sha256')
  let received = 0
  let reportedAt = Date.now()
  try {
    // Leaving this loop early (a throw) cancels the stream and frees the connection.
    for await (const chunk of res.body) {
      received += chunk.byteLength
      if (received > manifest.sizeBytes) throw sizeMismatch(manifest, received, 'more')
      hash.update(chunk)
      if (Date.now() - reportedAt >= PROGRESS_EVERY_MS) {
        reportedAt = Date.now()
        await ctx.progress({ step: 'download', receivedBytes: received, totalBytes: manifest.sizeBytes })
      }
    }
  } catch (err) {
    if (err instanceof PermanentError) throw err
    // Cancelled, lease lost or shutting down: the executor classifies its own reason.
    if (ctx.signal.aborted) throw ctx.signal.reason ?? err
    // The request's own timeout errors the body stream with a TimeoutError.
    const failure = err instanceof Error && err.name === 'TimeoutError' ? 'timeout' : 'network'
    throw new UpstreamError('plugin-archive', failure, { status: res.status, cause: err, opaque })
  }
  if (received !== manifest.sizeBytes) throw sizeMismatch(manifest, received, 'fewer')
  const sha256 = hash.digest('hex')
  if (sha256 !== manifest.sha256.toLowerCase()) {
    throw new PermanentError('checksum_mismatch', {
      message: 'the plugin archive does not match the SHA-256 of its manifest; it was not installed',
      details: { pluginId: manifest.id, version: manifest.version, expected: manifest.sha256.toLowerCase(), actual: sha256 },
    })
  }
  return { sha256, sizeBytes: received }
}

function sizeMismatch(manifest: PluginManifest, received: number, direction: 'more' | 'fewer'): PermanentError {
  return new PermanentError('size_mismatch', {
    message: `the plugin archive has ${direction} bytes than its manifest says; it was not installed`,
    details: { pluginId: manifest.id, version: manifest.version, expectedBytes: manifest.sizeBytes, receivedBytes: received },
  })
}
