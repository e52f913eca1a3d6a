import { createHash } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { dnsServerResolver } from '../lib/host-resolver.ts'
import { startFakeDnsServer, type FakeDnsServer } from '../testing/fake-dns-server.ts'
import { startFakeServer, type FakeServer } from '../testing/fake-server.ts'
import { useHandlerTestBed } from '../testing/run-jobs.ts'
import { createInstallPlugin } from './install-plugin.ts'
import type { InstallTables } from './plugin-installations.ts'

/*
 * A plugin's manifest names its archive and setup hook URLs: its author's
 * choice, not ours. The registry, the CDN and the hook host are fake
 * servers on 127.0.0.1 opened one by one in HANDLER_URL_ALLOWLIST; another
 * fake server on 127.0.0.1 plays an internal service no URL may reach. No
 * URL names an address off this machine (a broken guard would connect).
 */
const bed = useHandlerTestBed()
const TOKEN = 'registry-token-77c1'
let dns: FakeDnsServer
let registry: FakeServer
let cdn: FakeServer
let hooks: FakeServer
let internal: FakeServer

const port = (server: FakeServer) => new URL(server.url).port
const archive = Buffer.from('plugin archive bytes;'.repeat(50))
const sha256 = createHash('sha256').update(archive).digest('hex')

/** Each plugin id names the manifest's archive and hook URLs. */
function manifestOf(id: string): Record<string, unknown> {
  const urls: Record<string, { archiveUrl: string; setupHookUrl?: string }> = {
    'cdn-redirects-inside': { archiveUrl: `http://cdn.test:${port(cdn)}/to-internal.tgz` },
    'archive-inside': { archiveUrl: `http://127.0.0.1:${port(internal)}/a.tgz` },
    'archive-mapped': { archiveUrl: `http://[::ffff:127.0.0.1]:${port(internal)}/a.tgz` },
    'hook-inside': { archiveUrl: `http://cdn.test:${port(cdn)}/a.tgz`, setupHookUrl: `http://internal.test:${port(internal)}/hook` },
    'registry-to-cdn': { archiveUrl: `${registry.url}/files/a.tgz`, setupHookUrl: `http://hooks.test:${port(hooks)}/hook` },
  }
  return { id, version: '1.0.0', sha256, sizeBytes: archive.length, permissions: [], ...urls[id] }
}

beforeAll(async () => {
  dns = await startFakeDnsServer((name, type) => {
    if (type === 'AAAA') return name.endsWith('.test') ? [] : null
    return ['cdn.test', 'hooks.test', 'internal.test'].includes(name) ? ['127.0.0.1'] : null
  })
  internal = await startFakeServer((_req, res) => void res.writeHead(200).end(archive))
  cdn = await startFakeServer((req, res) => {
    if (req.path === '/to-internal.tgz') return void res.writeHead(302, { location: `http://127.0.0.1:${port(internal)}/a.tgz` }).end()
    res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(archive)
  })
  hooks = await startFakeServer((_req, res) => void res.writeHead(204).end())
  registry = await startFakeServer((req, res) => {
    const m = /^\/v1\/plugins\/([^/]+)\/versions\/1\.0\.0\/manifest$/.exec(req.path)
    if (m) return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(manifestOf(m[1]!)))
    // The registry's own download link hands over to the CDN.
    if (req.path === '/files/a.tgz') return void res.writeHead(302, { location: `http://cdn.test:${port(cdn)}/a.tgz` }).end()
    res.writeHead(404).end()
  })
  const deps = bed.deps(
    {
      PLUGIN_REGISTRY_URL: registry.url,
      PLUGIN_REGISTRY_TOKEN: TOKEN,
      HANDLER_URL_ALLOWLIST: `127.0.0.1:${port(registry)} cdn.test:${port(cdn)} hooks.test:${port(hooks)}`,
    },
    { resolveHost: dnsServerResolver([dns.address]) },
  )
  await bed.startWorker([createInstallPlugin(deps)])
})
afterAll(async () => {
  await Promise.all([dns, registry, cdn, hooks, internal].map((s) => s.close()))
})

async function install(storeId: string, pluginId: string) {
  const job = await bed.enqueue({ type: 'install.plugin', storeId, payload: { pluginId, version: '1.0.0' } })
  return bed.waitFinished(job.id)
}
const installationOf = (storeId: string, pluginId: string) =>
  bed.deps().shop.withTables<InstallTables>().selectFrom('shop.plugin_installations').selectAll().where('store_id', '=', storeId).where('plugin_id', '=', pluginId).executeTakeFirst()

describe('install.plugin URLs from a manifest', () => {
  it('refuses an archive on our own machine, however spelt, or a CDN redirect there, installing nothing', async () => {
    for (const pluginId of ['cdn-redirects-inside', 'archive-inside', 'archive-mapped']) {
      const done = await install('store-a', pluginId)
      expect([done.state, done.attempt, done.lastError?.code, done.lastError?.message], pluginId).toEqual([
        'failed',
        1,
        'fetch_refused',
        'plugin-archive: the URL was refused',
      ])
      expect(await installationOf('store-a', pluginId), pluginId).toBeUndefined()
    }
    expect(internal.requests).toEqual([])
  })

  it('refuses a setup hook inside our network and marks the installation failed', async () => {
    const done = await install('store-b', 'hook-inside')
    expect([done.state, done.attempt, done.lastError?.code]).toEqual(['failed', 1, 'fetch_refused'])
    expect(await installationOf('store-b', 'hook-inside')).toMatchObject({ state: 'failed', last_error_code: 'fetch_refused' })
    expect(internal.requests).toEqual([])
  })

  it('sends the registry token to the registry only, not to the CDN its download link redirects to', async () => {
    const done = await install('store-c', 'registry-to-cdn')
    expect(done.state, JSON.stringify(done.lastError)).toBe('completed')
    const download = registry.requests.find((r) => r.path === '/files/a.tgz')!
    expect(download.headers.authorization).toBe(`Bearer ${TOKEN}`)
    const fromCdn = cdn.requests.filter((r) => r.path === '/a.tgz')
    expect(fromCdn.length).toBeGreaterThan(0)
    for (const r of fromCdn) expect(r.headers.authorization).toBeUndefined()
    expect(hooks.requests.at(-1)!.headers.authorization).toBeUndefined()
  })
})
