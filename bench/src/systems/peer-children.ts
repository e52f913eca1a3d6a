import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { BenchWorkers } from './system.ts'

const PEER_CHILD = fileURLToPath(new URL('../peer-child.ts', import.meta.url))

/** Which peer a `peer-child.ts` process runs, and with which settings. */
export interface PeerChildSpec {
  readonly system: 'pgboss' | 'graphile'
  readonly variant: string
  readonly url: string
  readonly concurrency: number
}

/**
 * Spawns `processes` peer worker processes (`src/peer-child.ts`) and resolves once
 * every one of them is connected and waiting; then tells them all to start at once,
 * so process start-up stays outside the timed window (same protocol as
 * `worker-child.ts`: children print `handled N` lines and start on a stdin line).
 */
export function spawnPeerChildren(spec: PeerChildSpec, processes: number): Promise<BenchWorkers> {
  return spawnWorkerChildren(
    { script: PEER_CHILD, args: [spec.system, spec.variant, spec.url, String(spec.concurrency)], label: spec.system },
    processes,
  )
}

/**
 * A peer's workers for one measurement: in this process when `processes` is 1
 * (counting handler calls and passing each payload to `onStart`), else as
 * peer-child processes.
 */
export async function startPeerWorkers(args: {
  readonly spec: PeerChildSpec
  readonly processes: number
  readonly onStart?: (payload: Record<string, unknown>) => void
  readonly connect: (onJob: (payload: Record<string, unknown>) => void) => Promise<{ start(): Promise<void>; stop(): Promise<void> }>
}): Promise<BenchWorkers> {
  if (args.processes !== 1) return spawnPeerChildren(args.spec, args.processes)
  let handled = 0
  const worker = await args.connect((payload) => {
    handled++
    args.onStart?.(payload)
  })
  await worker.start()
  return { handled: async () => handled, stop: () => worker.stop() }
}

/**
 * Spawns `processes` worker processes running `script` (under tsx, with the
 * source condition) that speak the bench child protocol: print `handled N`
 * lines, start on a stdin line, exit on SIGTERM. Resolves once all are ready,
 * then starts them together; a child that dies before it is ready fails the run.
 */
export async function spawnWorkerChildren(
  child: { readonly script: string; readonly args: ReadonlyArray<string>; readonly label: string },
  processes: number,
): Promise<BenchWorkers> {
  const children: ChildProcess[] = []
  const counts: number[] = []
  const ready: Promise<void>[] = []
  for (let i = 0; i < processes; i++) {
    const proc = spawn(
      process.execPath,
      ['--conditions=@backroom/source', '--import', 'tsx', child.script, ...child.args],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    )
    counts.push(0)
    let buffer = ''
    proc.stdout!.on('data', (d: Buffer) => {
      buffer += d.toString()
      const lines = buffer.split('\n')
      buffer = lines.pop() ?? ''
      for (const line of lines) if (line.startsWith('handled ')) counts[i] = Number(line.slice(8))
    })
    // A child that dies before it is ready would otherwise leave the run waiting forever.
    ready.push(
      new Promise<void>((resolve, reject) => {
        const onExit = (code: number | null) => reject(new Error(`${child.label} child exited with ${code} before it was ready`))
        proc.once('exit', onExit)
        proc.stdout!.once('data', () => {
          proc.off('exit', onExit)
          resolve()
        })
      }),
    )
    children.push(proc)
  }
  try {
    await Promise.all(ready)
  } catch (error) {
    for (const c of children) c.kill('SIGKILL')
    throw error
  }
  for (const c of children) c.stdin!.write('go\n')
  return {
    handled: async () => counts.reduce((a, b) => a + b, 0),
    async stop() {
      await Promise.all(
        children.map(
          (c) =>
            new Promise<void>((resolve) => {
              if (c.exitCode !== null || c.signalCode !== null) return resolve()
              c.once('close', () => resolve())
              c.kill('SIGTERM')
            }),
        ),
      )
    },
  }
}
