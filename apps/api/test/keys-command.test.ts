import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { authenticateApiKey } from '@backroom/queue-core'
import { useTestDatabase } from '@backroom/queue-core/testing'
import { describe, expect, it } from 'vitest'

const t = useTestDatabase()
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url))

/** `pnpm backroom …` as an operator runs it (the script, on this test's database). */
function backroom(args: ReadonlyArray<string>, env: Record<string, string | undefined> = { DATABASE_URL: t.url }) {
  const { DATABASE_URL: _, ...rest } = process.env
  const run = spawnSync(process.execPath, ['--conditions=@backroom/source', '--import', 'tsx', 'scripts/backroom.ts', ...args], {
    cwd: repoRoot,
    env: { ...rest, ...env },
    encoding: 'utf8',
    timeout: 30_000,
  })
  return { code: run.status, out: run.stdout, err: run.stderr }
}

describe('pnpm backroom keys', () => {
  it('creates a store key that authenticates, shows it once, and revokes it', async () => {
    const created = backroom(['keys', 'create', '--store', 'store-cli', '--label', 'ops'])
    expect(created.code, created.err).toBe(0)
    const key = /key:\s+(brk_\S+)/.exec(created.out)?.[1]
    const id = /id:\s+(\d+)/.exec(created.out)?.[1]
    expect(key).toBeDefined()
    expect(await authenticateApiKey(t.db.kysely, key!)).toEqual({ keyId: id, storeId: 'store-cli' })

    const revoked = backroom(['keys', 'revoke', id!])
    expect(revoked.code, revoked.err).toBe(0)
    expect(await authenticateApiKey(t.db.kysely, key!)).toBeNull()
    expect(backroom(['keys', 'revoke', '424242']).code).toBe(1)

    // Both changes are audited with the actor `cli`, and `keys audit` prints them without the token.
    const audit = backroom(['keys', 'audit', id!])
    expect(audit.code, audit.err).toBe(0)
    const lines = audit.out.trim().split('\n')
    expect(lines).toHaveLength(2)
    expect(lines[0]).toMatch(/^\S+Z {2}revoked {2}by cli {2}store store-cli$/)
    expect(lines[1]).toMatch(/^\S+Z {2}created {2}by cli {2}store store-cli$/)
    expect(audit.out + audit.err).not.toContain(key!.replace(/^brk_\d+_/, ''))
    expect(backroom(['keys', 'audit', '424242']).code).toBe(1)
    expect(backroom(['keys', 'audit', 'admin']).code).toBe(0)
  })

  it('answers usage errors with exit 2 and never prints the database URL', () => {
    for (const args of [[], ['keys'], ['keys', 'rotate'], ['keys', 'revoke'], ['keys', 'create', '--bogus'], ['keys', 'audit'], ['keys', 'audit', '1', '--limit', '0'], ['keys', 'audit', '1', '--limit', 'x']]) {
      const run = backroom(args)
      expect(run.code, args.join(' ')).toBe(2)
      expect(run.err).toMatch(/usage/)
    }
    const noDb = backroom(['keys', 'create'], { DATABASE_URL: undefined })
    expect(noDb.code).toBe(2)
    const badDb = backroom(['keys', 'create'], { DATABASE_URL: 'postgres://someone:s3cret-pw@127.0.0.1:1/none' })
    expect(badDb.code).toBe(1)
    expect(badDb.out + badDb.err).not.toContain('s3cret-pw')
  })
})
