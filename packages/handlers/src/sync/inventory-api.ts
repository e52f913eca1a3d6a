import { Type, type Static } from 'typebox'
import { callUpstreamJson, type CallContext } from '../lib/http-client.ts'
import { UpstreamError } from '../lib/upstream-error.ts'
import { providerEnv } from '../lib/provider-env.ts'
import type { UrlGuard } from '../lib/url-guard.ts'

/*
 * Protocol: a cursor-paginated inventory-levels API in the manner of
 * Shopify's InventoryLevel endpoint.
 *
 *   GET {INVENTORY_API_URL}/v1/stores/{storeId}/inventory_levels?limit=250[&cursor=..][&skus=a,b,c]
 *   Authorization: Bearer {INVENTORY_API_KEY}
 *   200 → { "levels": [{ "sku": "..", "available": 12, "updatedAt": "ISO-8601" }], "nextCursor": ".." | null }
 *
 * `nextCursor` null ends the listing; `skus` narrows it to those SKUs.
 */

/** Service name in errors and logs. */
export const INVENTORY_SERVICE = 'inventory'

/** Levels asked for per page (the API's maximum, as Shopify's). */
export const INVENTORY_PAGE_LIMIT = 250

/** Per-request timeout unless INVENTORY_API_TIMEOUT_MS says otherwise. */
export const DEFAULT_INVENTORY_TIMEOUT_MS = 15_000

/**
 * Longest `skus=` value per request, encoded. A 500-SKU chunk of long SKUs
 * would make a URL past the 8 KiB many servers and proxies accept.
 */
export const MAX_SKUS_PARAM_CHARS = 6_000

/** Where and how to reach the inventory API, from the environment. */
export interface InventoryApiConfig {
  readonly baseUrl: string
  readonly apiKey: string
  readonly timeoutMs: number
  /** The guard every inventory request passes (`urlGuardFor(deps)`). */
  readonly urlGuard: UrlGuard
}

/**
 * Reads INVENTORY_API_URL, INVENTORY_API_KEY and INVENTORY_API_TIMEOUT_MS
 * (optional). Throws PermanentError `not_configured` naming the variable:
 * retrying cannot fix a worker's missing configuration. Requests will pass
 * `urlGuard`.
 */
export function inventoryApiConfig(env: Readonly<Record<string, string | undefined>>, urlGuard: UrlGuard): InventoryApiConfig {
  const read = providerEnv(env, 'sync.inventory')
  return {
    baseUrl: read.httpUrl('INVENTORY_API_URL', 'the inventory API endpoint is unknown'),
    apiKey: read.required('INVENTORY_API_KEY', 'the inventory API needs a bearer token'),
    timeoutMs: read.ms('INVENTORY_API_TIMEOUT_MS', DEFAULT_INVENTORY_TIMEOUT_MS, 600_000),
    urlGuard,
  }
}

/** One level as the API sends it. Providers add fields; we ignore them. */
const InventoryLevelBody = Type.Object({
  sku: Type.String({ minLength: 1, maxLength: 128 }),
  // Providers report oversold stock as negative; shop.products.stock is int4.
  available: Type.Integer({ minimum: -2_147_483_648, maximum: 2_147_483_647 }),
  // ISO 8601 with a zone, kept as sent so PostgreSQL keeps its full precision.
  updatedAt: Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,9})?(Z|[+-]\\d{2}:?\\d{2})$' }),
})

/** One page of the listing. */
export const InventoryLevelsPage = Type.Object({
  // Generous over the limit asked: a provider's page size is its business, a runaway page is not.
  levels: Type.Array(InventoryLevelBody, { maxItems: 4 * INVENTORY_PAGE_LIMIT }),
  nextCursor: Type.Union([Type.String({ minLength: 1, maxLength: 4_096 }), Type.Null()]),
})
export type InventoryLevelsPage = Static<typeof InventoryLevelsPage>

/** A level checked and ready to apply. */
export interface InventoryLevel {
  readonly sku: string
  readonly available: number
  /** As sent (ISO 8601). */
  readonly updatedAt: string
  readonly updatedAtMs: number
}

/** What to ask for: one page of the store's levels, after `cursor`, of `skus` if given. */
export interface LevelsPageRequest {
  readonly storeId: string
  readonly cursor: string | null
  readonly skus: ReadonlyArray<string> | null
  /** Sent as Idempotency-Key: harmless on a GET, and lets the provider trace retries. */
  readonly idempotencyKey: string
  /** Shared rate-limit key (see sendUpstream). */
  readonly rateKey: string
}

/**
 * Fetches one page of levels. Queue outcomes come from sendUpstream (429 →
 * snooze, 5xx/timeout → retry, other 4xx → permanent); a page whose JSON does
 * not match the protocol, or whose dates do not parse, is an UpstreamError
 * `malformed_response` (retried).
 */
export async function fetchLevelsPage(
  ctx: CallContext,
  api: InventoryApiConfig,
  req: LevelsPageRequest,
): Promise<{ readonly levels: ReadonlyArray<InventoryLevel>; readonly nextCursor: string | null }> {
  const url = new URL(`${api.baseUrl}/v1/stores/${encodeURIComponent(req.storeId)}/inventory_levels`)
  url.searchParams.set('limit', String(INVENTORY_PAGE_LIMIT))
  if (req.cursor !== null) url.searchParams.set('cursor', req.cursor)
  if (req.skus !== null) url.searchParams.set('skus', req.skus.join(','))
  const page = await callUpstreamJson(
    ctx,
    {
      service: INVENTORY_SERVICE,
      url,
      guard: api.urlGuard,
      headers: { authorization: `Bearer ${api.apiKey}` },
      timeoutMs: api.timeoutMs,
      idempotencyKey: req.idempotencyKey,
      rateKey: req.rateKey,
    },
    InventoryLevelsPage,
  )
  const levels = page.levels.map((level) => {
    const updatedAtMs = Date.parse(level.updatedAt)
    if (Number.isNaN(updatedAtMs)) {
      throw new UpstreamError(INVENTORY_SERVICE, 'malformed_response', { status: 200, message: 'inventory: a level has an invalid updatedAt' })
    }
    return { sku: level.sku, available: level.available, updatedAt: level.updatedAt, updatedAtMs }
  })
  return { levels, nextCursor: page.nextCursor }
}

/**
 * Splits SKUs into request chunks of at most `maxCount`, each whose
 * comma-joined, URL-encoded list stays within MAX_SKUS_PARAM_CHARS.
 */
export function chunkSkus(skus: ReadonlyArray<string>, maxCount: number): string[][] {
  const chunks: string[][] = []
  let current: string[] = []
  let chars = 0
  for (const sku of skus) {
    // +3: the encoded comma before it.
    const cost = encodeURIComponent(sku).length + 3
    if (current.length > 0 && (current.length >= maxCount || chars + cost > MAX_SKUS_PARAM_CHARS)) {
      chunks.push(current)
      current = []
      chars = 0
    }
    current.push(sku)
    chars += cost
  }
  if (current.length > 0) chunks.push(current)
  return chunks
}
