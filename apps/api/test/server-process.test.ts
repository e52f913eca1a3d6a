import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { useTestDatabase, waitFor } from '@backroom/queue-core/testing'
import { afterEach, describe, expect, it } from 'vitest'

const t = useTestDatabase()
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url))
const serverPath = fileURLToPath(new URL('../src/server.ts', import.meta.url))
let current: ChildProcess | null = null

function startServer(env: Record<string, string>): { child: ChildProcess; output(): string } {
  let out = ''
  const { DATABASE_URL: _, ...rest } = process.env
  const child = spawn(process.execPath, ['--conditions=@backroom/source', '--import', 'tsx', serverPath], {
    cwd: repoRoot,
    env: { ...rest, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()))
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()))
  current = child
  return { child, output: () => out }
}

afterEach(() => {
  if (current && current.exitCode === null && current.signalCode === null) current.kill('SIGKILL')
  current = null
})

describe('api process', () => {
  it('serves, then closes and exits 0 on SIGTERM without printing the database URL', async () => {
    const s = startServer({ DATABASE_URL: t.url, PORT: '0' })
    const line = await waitFor(() => /"msg":"Server listening at (http:\/\/127\.0\.0\.1:\d+)"/.exec(s.output()) ?? s.child.exitCode !== null, {
      timeoutMs: 30_000,
      what: 'api listening',
    })
    expect(Array.isArray(line), s.output()).toBe(true)
    const base = (line as RegExpExecArray)[1]
    expect((await fetch(`${base}/readyz`)).status).toBe(200)

    const exited = once(s.child, 'exit')
    s.child.kill('SIGTERM')
    const [code] = await exited
    expect(code, s.output()).toBe(0)
    expect(s.output()).toContain('"msg":"shutdown complete"')
    expect(s.output()).not.toContain(t.url)
  })

  it('fails fast with exit 1 and names the bad variable', async () => {
    const s = startServer({ DATABASE_URL: 'https://user:hunter2@example.com' })
    const [code] = await once(s.child, 'exit')
    expect(code).toBe(1)
    expect(s.output()).toContain('DATABASE_URL must be a postgres:// or postgresql:// URL')
    expect(s.output()).not.toContain('hunter2')
  })
})
