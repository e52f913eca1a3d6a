import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { waitFor } from '@backroom/queue-core/testing'

/** The repository's root: services run from there, as `pnpm start` runs them. */
const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url))

/** The process entries a test may start, by name. */
export const SERVICE_ENTRIES = {
  api: fileURLToPath(new URL('../../src/server.ts', import.meta.url)),
  worker: fileURLToPath(new URL('../../../worker/src/main.ts', import.meta.url)),
} as const

/** A service started as its own process (`node --import tsx <entry>`), with everything it printed. */
export interface RunningService {
  readonly child: ChildProcess
  /** stdout and stderr as written so far (the pino JSON lines, and anything printed outside pino). */
  output(): string
  /** Resolves once the process has exited, with its exit code (null: killed by a signal). */
  readonly exited: Promise<number | null>
  /** The exit code once the process exits by itself; rejects after `timeoutMs` (the process is left running). */
  exitWithin(timeoutMs: number): Promise<number | null>
  /** SIGTERM, then waits for the exit (SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<number | null>
}

/**
 * Starts a service's real process entry with `env` on top of this process's
 * environment minus DATABASE_URL and the service variables (so nothing of
 * the machine's own settings leaks in), stdout and stderr captured (whole,
 * or their last `keepOutputChars` or so).
 *
 * @example
 * const api = spawnService('api', { DATABASE_URL: url, PORT: '0' })
 * const base = await listeningUrl(api)
 */
export function spawnService(name: keyof typeof SERVICE_ENTRIES, env: Readonly<Record<string, string>>, options: { readonly keepOutputChars?: number } = {}): RunningService {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !/^(DATABASE_URL|REDIS_URL|BACKROOM_|CRON_SECRET|METRICS_KEY|API_|WORKER_|DEEPL_|IMPORT_FEED_|INVENTORY_|PLUGIN_|MARKETPLACE_|HANDLER_)/.test(key)),
  )
  const child = spawn(process.execPath, ['--conditions=@backroom/source', '--import', 'tsx', SERVICE_ENTRIES[name]], {
    cwd: REPO_ROOT,
    env: { ...inherited, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  const keep = options.keepOutputChars ?? Number.POSITIVE_INFINITY
  const append = (chunk: string) => {
    out += chunk
    // A long run's request lines are only wanted for their tail (failure reports).
    if (out.length > 2 * keep) out = out.slice(-keep)
  }
  child.stdout!.setEncoding('utf8').on('data', append)
  child.stderr!.setEncoding('utf8').on('data', append)
  const exited = once(child, 'exit').then(([code]) => code as number | null)
  return {
    child,
    output: () => out,
    exited,
    async exitWithin(timeoutMs) {
      let timer: NodeJS.Timeout | undefined
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${name} still running after ${timeoutMs} ms:\n${out.slice(-2_000)}`)), timeoutMs)
      })
      try {
        return await Promise.race([exited, late])
      } finally {
        clearTimeout(timer)
      }
    },
    async stop(graceMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
      try {
        return await exited
      } finally {
        clearTimeout(timer)
      }
    },
  }
}

/** The API's base URL once it logs that it listens (it logs its port; PORT=0 picks a free one). */
export async function listeningUrl(api: RunningService, timeoutMs = 60_000): Promise<string> {
  const match = await waitFor(() => /"msg":"Server listening at (http:\/\/127\.0\.0\.1:\d+)"/.exec(api.output()) ?? (api.child.exitCode !== null ? 'exited' : null), {
    timeoutMs,
    what: 'the api to listen',
  })
  if (match === 'exited') throw new Error(`the api exited before listening:\n${api.output().slice(-3_000)}`)
  return match[1]!
}
