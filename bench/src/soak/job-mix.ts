/** An enqueue body for `POST /v1/jobs` and the share of the mix it stands for. */
export type SoakJobKind = 'quick' | 'sleepy' | 'failing' | 'delayed' | 'translation'

/** Share of each kind in the mix (sums to 1). */
export const SOAK_MIX: Readonly<Record<SoakJobKind, number>> = {
  quick: 0.2,
  sleepy: 0.5,
  failing: 0.1,
  delayed: 0.1,
  translation: 0.1,
} as const

/** UI strings the translation jobs draw from: a few thousand, so translation memory fills up over a long run and later jobs are mostly served from it. */
const UI_STRINGS = 3_000

/**
 * Job `i` of the soak, drawn with `rng`: `system.canary` jobs, and
 * `translation.ui` jobs against the fake DeepL (see fake-deepl.ts).
 * - quick: no sleep; sleepy: holds its slot 1–200 ms;
 * - failing: fails retryably on every attempt with maxAttempts 2, so it is
 *   retried once (after the backoff) and then ends `failed` in history;
 * - delayed: `delayMs` 1–30 s, so the scheduled → pending path runs all along;
 * - translation: `translation.ui`, 3 strings into 2 locales (DeepL calls and
 *   the shop's translation tables).
 */
export function soakJob(i: number, stores: number, rng: () => number): { kind: SoakJobKind; body: Record<string, unknown> } {
  const storeId = `soak-store-${i % stores}`
  const r = rng()
  const sleepMs = Math.floor(rng() * 200) + 1
  if (r < SOAK_MIX.quick) return { kind: 'quick', body: { type: 'system.canary', storeId, payload: {} } }
  if (r < SOAK_MIX.quick + SOAK_MIX.sleepy) return { kind: 'sleepy', body: { type: 'system.canary', storeId, payload: { sleepMs } } }
  if (r < SOAK_MIX.quick + SOAK_MIX.sleepy + SOAK_MIX.failing) {
    return { kind: 'failing', body: { type: 'system.canary', storeId, payload: { fail: 'retryable' }, maxAttempts: 2 } }
  }
  if (r < 1 - SOAK_MIX.translation) {
    const delayMs = 1_000 + Math.floor(rng() * 29_000)
    return { kind: 'delayed', body: { type: 'system.canary', storeId, payload: { sleepMs: Math.floor(sleepMs / 4) }, delayMs } }
  }
  const strings = Array.from({ length: 3 }, (_, k) => {
    const n = Math.floor(rng() * UI_STRINGS)
    return { key: `soak.label.${k}.${n}`, text: `Label ${n} of the soak storefront` }
  })
  return { kind: 'translation', body: { type: 'translation.ui', storeId, payload: { sourceLocale: 'en', targetLocales: ['de', 'fr'], strings } } }
}
