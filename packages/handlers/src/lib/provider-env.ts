import { PermanentError } from '@backroom/queue-core'

/** The environment handlers read their providers' settings from. */
export type Env = Readonly<Record<string, string | undefined>>

/**
 * Reads one provider's settings, failing a job with PermanentError
 * `not_configured` (details `{ variable }`, the message naming it) when one
 * is missing or unusable: retrying cannot fix a deployment. Handlers read
 * their settings per run, not at worker start, so a worker without one
 * provider still runs every other job type.
 *
 * @example
 * const read = providerEnv(env, 'translation.ui')
 * const config = { url: read.httpUrl('DEEPL_API_URL'), key: read.required('DEEPL_API_KEY'), timeoutMs: read.ms('DEEPL_TIMEOUT_MS', 30_000) }
 */
export function providerEnv(env: Env, jobType: string) {
  const notConfigured = (variable: string, problem: string): never => {
    throw new PermanentError('not_configured', { message: `${jobType}: ${variable} ${problem}`, details: { variable } })
  }
  const required = (name: string, what = ''): string => {
    const value = env[name]?.trim()
    return value ? value : notConfigured(name, `is not set${what ? `: ${what}` : ''}`)
  }
  return {
    required,
    /** An http(s) URL, without trailing slashes. */
    httpUrl(name: string, what = ''): string {
      const value = required(name, what)
      if (!URL.canParse(value) || !/^https?:$/.test(new URL(value).protocol)) notConfigured(name, 'is not an http(s) URL')
      return value.replace(/\/+$/, '')
    },
    /** Whole milliseconds from 1 to `max`; `fallback` when unset. */
    ms(name: string, fallback: number, max = 3_600_000): number {
      const text = env[name]?.trim()
      if (!text) return fallback
      const value = Number(text)
      return Number.isInteger(value) && value >= 1 && value <= max
        ? value
        : notConfigured(name, `must be a whole number of milliseconds from 1 to ${max}`)
    },
    /** A number above 0; `fallback` when unset. */
    positive(name: string, fallback: number): number {
      const text = env[name]?.trim()
      if (!text) return fallback
      const value = Number(text)
      return Number.isFinite(value) && value > 0 ? value : notConfigured(name, 'must be a number above 0')
    },
    /** An optional value (trimmed; undefined when unset). */
    optional(name: string): string | undefined {
      return env[name]?.trim() || undefined
    },
  }
}
