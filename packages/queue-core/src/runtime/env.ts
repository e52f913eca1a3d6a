/** Pino's levels, accepted by LOG_LEVEL. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/** The environment does not describe a runnable service; `problems` names each variable at fault (never its value). */
export class ConfigError extends Error {
  readonly code = 'invalid_config' as const
  readonly problems: ReadonlyArray<string>
  constructor(problems: ReadonlyArray<string>) {
    super(`invalid configuration: ${problems.join('; ')}`)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

/** The environment as config parsers read it. */
export type Env = Readonly<Record<string, string | undefined>>

/** True for a postgres:// or postgresql:// URL. */
export function isPostgresUrl(value: string): boolean {
  try {
    return ['postgres:', 'postgresql:'].includes(new URL(value).protocol)
  } catch {
    return false
  }
}

/**
 * An integer variable >= `min`, or `fallback` when unset. A bad value adds a
 * problem naming the variable (never its value) and yields the fallback, so a
 * parser reports every bad variable at once.
 */
export function envInteger(
  env: Env,
  name: string,
  fallback: number,
  min: number,
  problems: string[],
): number {
  const raw = env[name]?.trim()
  if (raw === undefined || raw === '') return fallback
  const value = /^\d+$/.test(raw) ? Number(raw) : Number.NaN
  if (!Number.isSafeInteger(value) || value < min) {
    problems.push(`${name} must be an integer >= ${min}`)
    return fallback
  }
  return value
}

/** One of `allowed` (case-insensitive), or `fallback` when unset; a bad value adds a problem. */
export function envOneOf<T extends string>(
  env: Env,
  name: string,
  allowed: ReadonlyArray<T>,
  fallback: T,
  problems: string[],
): T {
  const raw = env[name]?.trim().toLowerCase()
  if (raw === undefined || raw === '') return fallback
  if ((allowed as ReadonlyArray<string>).includes(raw)) return raw as T
  problems.push(`${name} must be one of ${allowed.join(', ')}`)
  return fallback
}
