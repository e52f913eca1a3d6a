import { randomBytes } from 'node:crypto'
import { useTestDatabase, waitFor } from '@backroom/queue-core/testing'
import { afterEach, describe, expect, it } from 'vitest'
import { listeningUrl, spawnService, type RunningService } from './support/spawn-service.ts'

const t = useTestDatabase()
const KEY_A = `rotation-a-${randomBytes(24).toString('base64url')}`
const KEY_B = `rotation-b-${randomBytes(24).toString('base64url')}`
/** Successful answers the client collects in each phase before the next step, so every phase carries real traffic. */
const PER_PHASE = 60
const LANES = 3

const started: RunningService[] = []
afterEach(async () => {
  for (const service of started.splice(0)) await service.stop(5_000)
})

/** One API process, as deployed (real entry, real port), with the given admin keys. */
async function startApi(name: string, env: Record<string, string>): Promise<{ name: string; service: RunningService; base: string }> {
  const service = spawnService('api', { DATABASE_URL: t.url, PORT: '0', LOG_LEVEL: 'info', ...env })
  started.push(service)
  return { name, service, base: await listeningUrl(service) }
}

type Api = Awaited<ReturnType<typeof startApi>>

describe('admin key rotation across API processes', () => {
  it(
    'serves a client that keeps sending through the whole rotation with zero failed requests, audits which key each process accepted, and refuses the old key at the end',
    async () => {
      const p1 = await startApi('p1', { BACKROOM_ADMIN_KEY: KEY_A })

      // The client: LANES loops, each request to the next live process (a
      // load balancer's round robin) with the key the client holds now.
      let live: Api[] = [p1]
      let token = KEY_A
      let turn = 0
      let running = true
      const inFlight = new Map<string, number>()
      /** Successful answers by process and key ('A' or 'B'). */
      const ok = new Map<string, number>()
      const failures: string[] = []
      let total = 0
      const okCount = () => [...ok.values()].reduce((a, b) => a + b, 0)
      const lane = async () => {
        while (running) {
          const target = live[turn++ % live.length]!
          const held = token
          const keyName = held === KEY_A ? 'A' : 'B'
          inFlight.set(target.name, (inFlight.get(target.name) ?? 0) + 1)
          total++
          try {
            const res = await fetch(`${target.base}/v1/jobs?limit=1`, { headers: { authorization: `Bearer ${held}` } })
            await res.arrayBuffer()
            if (res.status >= 200 && res.status < 300) ok.set(`${target.name}:${keyName}`, (ok.get(`${target.name}:${keyName}`) ?? 0) + 1)
            else failures.push(`${target.name} with ${keyName}: ${res.status}`)
          } catch (err) {
            failures.push(`${target.name} with ${keyName}: ${String(err)}`)
          } finally {
            inFlight.set(target.name, inFlight.get(target.name)! - 1)
          }
        }
      }
      const afterMore = async (what: string) => {
        const goal = okCount() + PER_PHASE
        await waitFor(() => okCount() >= goal || failures.length > 0, { timeoutMs: 60_000, what })
      }
      /** A load balancer's drain: no new request to `api`, the ones it holds are answered, then SIGTERM. */
      const drainAndStop = async (api: Api) => {
        live = live.filter((a) => a !== api)
        await waitFor(() => (inFlight.get(api.name) ?? 0) === 0, { timeoutMs: 30_000, what: `${api.name}'s requests to finish` })
        expect(await api.service.stop(), api.service.output().slice(-2_000)).toBe(0)
      }
      const lanes = Array.from({ length: LANES }, lane)
      try {
        await afterMore('traffic on p1')

        // Step 1: P2 knows the new key B and still accepts A.
        const p2 = await startApi('p2', { BACKROOM_ADMIN_KEY: KEY_B, BACKROOM_ADMIN_KEY_PREVIOUS: KEY_A })
        live = [...live, p2]
        await afterMore('traffic on p1 and p2 with key A')

        // Revocation is effective on the very next request, in another process.
        const created = await fetch(`${p2.base}/v1/keys`, {
          method: 'POST',
          headers: { authorization: `Bearer ${KEY_A}`, 'content-type': 'application/json' },
          body: JSON.stringify({ storeId: 'store-rotation' }),
        })
        expect(created.status).toBe(201)
        const newKey = (await created.json()) as { id: string; key: string }
        const list = (api: Api) => fetch(`${api.base}/v1/jobs?limit=1`, { headers: { authorization: `Bearer ${newKey.key}` } }).then((r) => r.status)
        expect(await list(p1)).toBe(200)
        const revoked = await fetch(`${p1.base}/v1/keys/${newKey.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${KEY_A}` } })
        expect(revoked.status).toBe(204)
        expect(await list(p2)).toBe(401)
        expect(await list(p1)).toBe(401)

        // Step 2: the last process that knows only A goes; then the client moves to B.
        await drainAndStop(p1)
        token = KEY_B
        await afterMore('traffic on p2 with key B')

        // Step 3: P3 knows only B; P2 goes.
        const p3 = await startApi('p3', { BACKROOM_ADMIN_KEY: KEY_B })
        live = [...live, p3]
        await afterMore('traffic on p2 and p3 with key B')
        await drainAndStop(p2)
        await afterMore('traffic on p3 with key B')

        // The rotation is over: P3 refuses A.
        const old = await fetch(`${p3.base}/v1/jobs?limit=1`, { headers: { authorization: `Bearer ${KEY_A}` } })
        expect(old.status).toBe(401)
        running = false
        await Promise.all(lanes)
        expect(await p3.service.stop()).toBe(0)

        const counts = Object.fromEntries(ok)
        console.info(`admin-key-rotation: ${total} requests, ${failures.length} failed; answered by process and key: ${JSON.stringify(counts)}`)
        expect(failures, failures.slice(0, 5).join('\n')).toEqual([])
        expect(okCount()).toBe(total)
        // Every process and key the plan expects carried traffic, and no other.
        expect(Object.keys(counts).sort()).toEqual(['p1:A', 'p2:A', 'p2:B', 'p3:B'])

        // The audit, flushed by each process at its clean stop, has every use exactly:
        // A at P2 was the previous key there; everything else was each process's current key.
        const { rows } = await t.db.pool.query<{ key_id: string; uses: number }>(
          `select key_id, sum(uses)::int as uses from api_key_audit where event = 'used' and key_id in ('admin', 'admin-previous') group by key_id order by key_id`,
        )
        // Plus the side requests of the revocation check: POST /v1/keys with A at P2, DELETE with A at P1.
        expect(rows).toEqual([
          { key_id: 'admin', uses: counts['p1:A']! + counts['p2:B']! + counts['p3:B']! + 1 },
          { key_id: 'admin-previous', uses: counts['p2:A']! + 1 },
        ])
        const { rows: changes } = await t.db.pool.query(
          `select event, actor, coalesce(uses, 0)::int as uses from api_key_audit where key_id = $1 order by event`,
          [newKey.id],
        )
        expect(changes).toEqual([
          { event: 'created', actor: 'admin-previous', uses: 0 },
          { event: 'revoked', actor: 'admin', uses: 0 },
          { event: 'used', actor: null, uses: 1 },
        ])

        // The logs say which admin key was used, warn once about the previous one, and never hold a key.
        const p2Log = p2.service.output()
        expect(p2Log).toContain('"keyId":"admin-previous"')
        expect(p2Log.match(/still uses BACKROOM_ADMIN_KEY_PREVIOUS/g)).toHaveLength(1)
        for (const api of [p1, p2, p3]) {
          const out = api.service.output()
          for (const [name, value] of [['A', KEY_A], ['B', KEY_B], ['the new key', newKey.key]] as const) {
            expect(out.includes(value), `${name} in ${api.name}'s output`).toBe(false)
          }
        }
      } finally {
        running = false
        await Promise.all(lanes)
      }
    },
    180_000,
  )

  it('refuses to start with a previous admin key that is too short or equal to the current one, naming the variable and not the value', async () => {
    const cases = [
      { env: { BACKROOM_ADMIN_KEY: KEY_B, BACKROOM_ADMIN_KEY_PREVIOUS: 'too-short-previous-key' }, problem: 'BACKROOM_ADMIN_KEY_PREVIOUS must be at least 32 characters' },
      { env: { BACKROOM_ADMIN_KEY: KEY_B, BACKROOM_ADMIN_KEY_PREVIOUS: KEY_B }, problem: 'BACKROOM_ADMIN_KEY_PREVIOUS must differ from BACKROOM_ADMIN_KEY' },
    ]
    await Promise.all(
      cases.map(async ({ env, problem }) => {
        const service = spawnService('api', { DATABASE_URL: t.url, PORT: '0', ...env })
        started.push(service)
        expect(await service.exitWithin(60_000)).toBe(1)
        expect(service.output()).toContain(problem)
        expect(service.output()).not.toContain(env.BACKROOM_ADMIN_KEY_PREVIOUS)
        expect(service.output()).not.toContain(KEY_B)
      }),
    )
  }, 90_000)
})
