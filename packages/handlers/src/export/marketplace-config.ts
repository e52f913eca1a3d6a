import { providerEnv } from '../lib/provider-env.ts'
import type { UrlGuard } from '../lib/url-guard.ts'

/** Environment variables the marketplace client reads. */
export const MARKETPLACE_ENV = {
  /** Base URL of the marketplace API (required), e.g. `https://feeds.example.com`. */
  apiUrl: 'MARKETPLACE_API_URL',
  /** Bearer token of the marketplace API (required). Never logged. */
  apiKey: 'MARKETPLACE_API_KEY',
  /** Per-upload timeout in milliseconds (default 120 000). */
  timeoutMs: 'MARKETPLACE_TIMEOUT_MS',
  /** Default uploads per second per (marketplace, store) key that has no rate limit yet (default 2). */
  ratePerSecond: 'MARKETPLACE_RATE_PER_SEC',
} as const

/** A whole feed goes up in one request: minutes, not the 30 s of a small API call. */
export const DEFAULT_MARKETPLACE_TIMEOUT_MS = 120_000
/**
 * A whole-feed upload is rare (a few a day per store), so a low default only
 * spaces out bursts of re-exports; operators raise it per key with setRateLimit.
 */
export const DEFAULT_MARKETPLACE_RATE_PER_SEC = 2

/** The marketplace client's settings, read from the environment. */
export interface MarketplaceConfig {
  /** Without a trailing slash. */
  readonly apiUrl: string
  readonly apiKey: string
  readonly timeoutMs: number
  readonly ratePerSecond: number
  /** The guard every upload passes (`urlGuardFor(deps)`). */
  readonly urlGuard: UrlGuard
}

/**
 * Reads the marketplace settings from `env` at run time (not at worker
 * start: a worker without them still runs every other job type). Missing or
 * unusable settings fail the job at once with `not_configured`, naming the
 * variable; retrying cannot fix a deployment. Uploads will pass `urlGuard`.
 */
export function readMarketplaceConfig(env: Readonly<Record<string, string | undefined>>, urlGuard: UrlGuard): MarketplaceConfig {
  const read = providerEnv(env, 'export.marketplace')
  return {
    apiUrl: read.httpUrl(MARKETPLACE_ENV.apiUrl),
    apiKey: read.required(MARKETPLACE_ENV.apiKey),
    timeoutMs: read.positive(MARKETPLACE_ENV.timeoutMs, DEFAULT_MARKETPLACE_TIMEOUT_MS),
    ratePerSecond: read.positive(MARKETPLACE_ENV.ratePerSecond, DEFAULT_MARKETPLACE_RATE_PER_SEC),
    urlGuard,
  }
}
