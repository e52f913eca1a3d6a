/** Base delay of the first retry. */
export const DEFAULT_BACKOFF_BASE_MS = 1_000
/** No retry waits longer than this. */
export const DEFAULT_BACKOFF_MAX_MS = 6 * 60 * 60_000

/**
 * When a failed attempt runs again: exponential backoff with full jitter in
 * the upper half, `base * 2^(attempt-1)` capped at `maxMs`, so a burst of
 * failures does not come back as a burst.
 *
 * @example nextRunAt(3, new Date(), Math.random) // 2-4 s from now
 */
export function nextRunAt(
  attempt: number,
  now: Date,
  rng: () => number = Math.random,
  options: { baseMs?: number; maxMs?: number } = {},
): Date {
  const base = options.baseMs ?? DEFAULT_BACKOFF_BASE_MS
  const max = options.maxMs ?? DEFAULT_BACKOFF_MAX_MS
  const exp = Math.min(max, base * 2 ** Math.max(0, Math.min(attempt - 1, 40)))
  const delay = exp / 2 + rng() * (exp / 2)
  return new Date(now.getTime() + Math.round(delay))
}
