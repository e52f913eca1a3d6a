import { setTimeout as sleep } from 'node:timers/promises'

/**
 * Resolves once `url` answers 2xx; polls until then. Rejects when `signal`
 * aborts (the caller gave up: a service died, or the user pressed Ctrl-C).
 */
export async function waitForHttp(url: string, options: { readonly signal: AbortSignal; readonly intervalMs?: number }): Promise<void> {
  const { signal } = options
  for (;;) {
    signal.throwIfAborted()
    try {
      const res = await fetch(url, { signal: AbortSignal.any([signal, AbortSignal.timeout(1_000)]) })
      if (res.ok) return
    } catch {
      // Not listening yet (or too slow): try again.
    }
    await sleep(options.intervalMs ?? 100, undefined, { signal }).catch(() => {})
  }
}
