import { spawn, type ChildProcess } from 'node:child_process'
import { constants } from 'node:os'

/** A service process started by `pnpm start`. */
export interface Service {
  readonly name: string
  readonly child: ChildProcess
  /** Resolves with its exit code (128 + n when killed by signal n). */
  readonly exited: Promise<number>
  readonly running: boolean
}

/**
 * Starts a TypeScript entry point the way `pnpm start:api` / `start:worker`
 * do (tsx loader, workspace packages from source), sharing our stdout and
 * stderr so its JSON logs reach the terminal (or writing them to `output`).
 */
export function spawnService(args: {
  readonly name: string
  readonly entry: string
  readonly root: string
  readonly env: NodeJS.ProcessEnv
  /** A file descriptor for its stdout and stderr instead of ours (long runs log to a file). */
  readonly output?: number
}): Service {
  const child = spawn(process.execPath, ['--conditions=@backroom/source', '--import', 'tsx', args.entry], {
    cwd: args.root,
    env: args.env,
    stdio: ['ignore', args.output ?? 'inherit', args.output ?? 'inherit'],
  })
  let running = true
  const exited = new Promise<number>((resolve) => {
    child.once('error', () => {
      running = false
      resolve(1)
    })
    child.once('exit', (code, signal) => {
      running = false
      resolve(code ?? 128 + (signal ? constants.signals[signal] : 0))
    })
  })
  return {
    name: args.name,
    child,
    exited,
    get running() {
      return running
    },
  }
}
