import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Job } from '@backroom/queue-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFakeServer, type FakeServer } from '../testing/fake-server.ts'
import { useHandlerTestBed } from '../testing/run-jobs.ts'
import { createInstallPlugin, type InstallPluginResult } from './install-plugin.ts'
import type { InstallTables } from './plugin-installations.ts'

const bed = useHandlerTestBed()
let registry: FakeServer
let cdn: FakeServer
let hooks: FakeServer

/** The bytes the fake CDN serves for a plugin version (~20 KB). */
const archiveOf = (id: string, version: string) => Buffer.from(`${id}@${version};`.repeat(1_000))
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex')

function manifestOf(id: string, version: string, overrides: Record<string, unknown> = {}) {
  const bytes = archiveOf(id, version)
  return {
    id,
    version,
    archiveUrl: `${cdn.url}/archives/${id}/${version}.tgz`,
    sha256: sha256(bytes),
    sizeBytes: bytes.length,
    setupHookUrl: `${hooks.url}/hooks/${id}`,
    permissions: ['read_products'],
    ...overrides,
  }
}

/** Requests a fake server received for one plugin (its id is a path segment on every server). */
const hits = (server: FakeServer, pluginId: string) => server.requests.filter((r) => r.path.split('/').includes(pluginId))
/** How many times this exact path was asked so far, the current request included. */
const nth = (server: FakeServer, path: string) => server.requests.filter((r) => r.path === path).length

function sendJson(res: import('node:http').ServerResponse, body: unknown, status = 200) {
  res.writeHead(status, { 'content-type': 'application/json' }).end(typeof body === 'string' ? body : JSON.stringify(body))
}

beforeAll(async () => {
  registry = await startFakeServer((req, res) => {
    const m = /^\/v1\/plugins\/([^/]+)\/versions\/([^/]+)\/manifest$/.exec(req.path)
    if (!m) return void res.writeHead(404).end()
    const [, id = '', version = ''] = m
    const n = nth(registry, req.path)
    if (id === 'throttled' && n === 1) return void res.writeHead(429, { 'retry-after': '1' }).end()
    if (id === 'malformed' && n === 1) return sendJson(res, '{"id":"malformed","vers')
    if (id === 'tampered') return sendJson(res, manifestOf(id, version, { sha256: sha256(Buffer.from('another package')) }))
    if (id === 'understated') return sendJson(res, manifestOf(id, version, { sizeBytes: 1_000 }))
    if (id === 'no-hook') return sendJson(res, manifestOf(id, version, { setupHookUrl: undefined }))
    sendJson(res, manifestOf(id, version))
  })
  cdn = await startFakeServer(async (req, res) => {
    const m = /^\/archives\/([^/]+)\/([^/]+)\.tgz$/.exec(req.path)
    if (!m) return void res.writeHead(404).end()
    const [, id = '', version = ''] = m
    const bytes = archiveOf(id, version)
    if (id === 'slow-archive' && nth(cdn, req.path) === 1) {
      // Headers and a first chunk, then a stall: the download's timeout must end it.
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length })
      return void res.write(bytes.subarray(0, 100))
    }
    // Long enough for a second job of the same plugin to find the lock taken.
    if (id === 'concurrent') await sleep(300)
    res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(bytes)
  })
  hooks = await startFakeServer((req, res) => {
    const id = req.path.split('/')[2]
    if (id === 'flaky-hook' && nth(hooks, req.path) === 1) return void res.writeHead(500).end('setup crashed')
    if (id === 'refusing-hook') return sendJson(res, { error: 'store not eligible' }, 422)
    res.writeHead(204).end()
  })
  const installPlugin = createInstallPlugin(
    bed.deps({
      PLUGIN_REGISTRY_URL: registry.url,
      PLUGIN_REGISTRY_TOKEN: 'registry-secret',
      PLUGIN_HTTP_TIMEOUT_MS: '2000',
      PLUGIN_DOWNLOAD_TIMEOUT_MS: '1000',
    }),
  )
  await bed.startWorker([installPlugin])
})
afterAll(async () => {
  await Promise.all([registry.close(), cdn.close(), hooks.close()])
})

const shop = () => bed.deps().shop.withTables<InstallTables>()
const installationOf = (storeId: string, pluginId: string) =>
  shop().selectFrom('shop.plugin_installations').selectAll().where('store_id', '=', storeId).where('plugin_id', '=', pluginId).executeTakeFirst()
const journalOf = (jobId: string) => shop().selectFrom('shop.plugin_install_steps').select('step').where('job_id', '=', jobId).execute()

async function install(storeId: string, pluginId: string, version = '1.0.0'): Promise<Job> {
  const job = await bed.enqueue({ type: 'install.plugin', storeId, payload: { pluginId, version } })
  return bed.waitFinished(job.id)
}

describe('install.plugin', () => {
  it('installs a verified plugin, sending the registry token to the registry only', async () => {
    const done = await install('store-a', 'happy')
    expect(done.state).toBe('completed')
    const result = done.result as InstallPluginResult
    expect(result).toEqual({ installationId: expect.any(String), version: '1.0.0', outcome: 'installed' })

    const [manifestReq] = hits(registry, 'happy')
    const [archiveReq] = hits(cdn, 'happy')
    const [hookReq] = hits(hooks, 'happy')
    expect(manifestReq!.headers.authorization).toBe('Bearer registry-secret')
    expect(archiveReq!.headers.authorization).toBeUndefined()
    expect(hookReq!.headers.authorization).toBeUndefined()
    expect(hookReq!.method).toBe('POST')
    expect(hookReq!.headers['idempotency-key']).toBe(`backroom:install.plugin:${done.id}:setup-hook`)
    expect(JSON.parse(hookReq!.body)).toEqual({ storeId: 'store-a', pluginId: 'happy', version: '1.0.0', installationId: result.installationId })

    const row = await installationOf('store-a', 'happy')
    const bytes = archiveOf('happy', '1.0.0')
    expect(row).toMatchObject({
      id: result.installationId,
      version: '1.0.0',
      installed_version: '1.0.0',
      state: 'installed',
      step: 'done',
      archive_sha256: sha256(bytes),
      archive_size_bytes: String(bytes.length),
      job_id: done.id,
    })
    expect(row!.manifest.permissions).toEqual(['read_products'])
    expect(row!.installed_at).toBeInstanceOf(Date)
    expect(await journalOf(done.id)).toEqual([])
  })

  it('installs a plugin without a setup hook', async () => {
    const done = await install('store-a', 'no-hook')
    expect(done.state).toBe('completed')
    expect(hits(hooks, 'no-hook')).toHaveLength(0)
    expect((await installationOf('store-a', 'no-hook'))?.state).toBe('installed')
  })

  it('completes as a no-op for the installed version and upgrades to another one', async () => {
    expect((await install('store-b', 'upgradable', '1.0.0')).result).toMatchObject({ outcome: 'installed' })
    const again = await install('store-b', 'upgradable', '1.0.0')
    expect(again.result).toMatchObject({ outcome: 'already_installed', version: '1.0.0' })
    expect(hits(registry, 'upgradable')).toHaveLength(1)

    const upgrade = await install('store-b', 'upgradable', '2.0.0')
    expect(upgrade.result).toMatchObject({ outcome: 'upgraded', version: '2.0.0', previousVersion: '1.0.0' })
    const row = await installationOf('store-b', 'upgradable')
    expect(row).toMatchObject({ version: '2.0.0', installed_version: '2.0.0', state: 'installed' })
    expect(row!.archive_sha256).toBe(sha256(archiveOf('upgradable', '2.0.0')))
    // Another store's install of the same plugin is its own row.
    expect(await installationOf('store-a', 'upgradable')).toBeUndefined()
  })

  it('resumes at the setup hook after a hook 500, with the same idempotency key', async () => {
    const done = await install('store-c', 'flaky-hook')
    expect(done.state).toBe('completed')
    expect(done.attempt).toBe(2)
    // The hook's URL is the plugin author's: its failure is reported without the status.
    expect(done.errors.map((e) => [e.code, e.message])).toEqual([['fetch_failed', 'plugin-setup-hook: the request failed']])
    expect(hits(registry, 'flaky-hook')).toHaveLength(1)
    expect(hits(cdn, 'flaky-hook')).toHaveLength(1)
    const hookCalls = hits(hooks, 'flaky-hook')
    const key = `backroom:install.plugin:${done.id}:setup-hook`
    expect(hookCalls.map((r) => r.headers['idempotency-key'])).toEqual([key, key])
    // The retry sends the installation id journaled by the first attempt.
    expect(hookCalls[1]!.body).toBe(hookCalls[0]!.body)
    expect(JSON.parse(hookCalls[1]!.body)).toMatchObject({ installationId: (done.result as InstallPluginResult).installationId })
    expect(await installationOf('store-c', 'flaky-hook')).toMatchObject({ state: 'installed', installed_version: '1.0.0' })
  })

  it('fails permanently on a checksum or size mismatch and records no installation', async () => {
    for (const [pluginId, code] of [
      ['tampered', 'checksum_mismatch'],
      ['understated', 'size_mismatch'],
    ] as const) {
      const done = await install('store-d', pluginId)
      expect(done.state, pluginId).toBe('failed')
      expect(done.attempt, pluginId).toBe(1)
      expect(done.lastError?.code, pluginId).toBe(code)
      expect(await installationOf('store-d', pluginId), pluginId).toBeUndefined()
      expect(hits(hooks, pluginId), pluginId).toHaveLength(0)
      expect(await journalOf(done.id), pluginId).toEqual([])
    }
  })

  it('marks the installation failed, without retrying, when the hook refuses it', async () => {
    const done = await install('store-e', 'refusing-hook')
    expect(done.state).toBe('failed')
    expect(done.attempt).toBe(1)
    expect(done.lastError).toMatchObject({ code: 'fetch_failed', message: 'plugin-setup-hook: the request failed' })
    expect(await installationOf('store-e', 'refusing-hook')).toMatchObject({
      state: 'failed',
      installed_version: null,
      last_error_code: 'fetch_failed',
    })
  })

  it('snoozes on a registry 429 without spending an attempt', async () => {
    const done = await install('store-f', 'throttled')
    expect(done.state).toBe('completed')
    expect(done.attempt).toBe(1)
    expect(done.errors).toEqual([])
    expect(hits(registry, 'throttled')).toHaveLength(2)
    expect(done.finishedAt!.getTime() - done.createdAt.getTime()).toBeGreaterThanOrEqual(900)
  })

  it('retries a stalled archive download after its timeout, without fetching the manifest again', async () => {
    const done = await install('store-f', 'slow-archive')
    expect(done.state).toBe('completed')
    expect(done.attempt).toBe(2)
    // A timeout on the CDN (another origin than the registry's) is a generic, retried fetch_failed.
    expect(done.errors.map((e) => e.code)).toEqual(['fetch_failed'])
    expect(hits(registry, 'slow-archive')).toHaveLength(1)
    expect(hits(cdn, 'slow-archive')).toHaveLength(2)
  })

  it('retries a malformed manifest', async () => {
    const done = await install('store-f', 'malformed')
    expect(done.state).toBe('completed')
    expect(done.attempt).toBe(2)
    expect(done.errors.map((e) => e.code)).toEqual(['upstream_malformed_response'])
  })

  it('fails a bad payload at once without calling the registry', async () => {
    const before = registry.requests.length
    for (const payload of [
      { pluginId: 'Not A Slug', version: '1.0.0' },
      { pluginId: 'happy', version: 'latest' },
      { pluginId: 'happy', version: '1.0.0', storeId: 'store-x' },
      { pluginId: 'happy' },
      // Path traversal: ids and versions name registry paths, so neither may carry a separator or dots.
      { pluginId: '../../admin', version: '1.0.0' },
      { pluginId: 'happy', version: '1.0.0/../../../etc/passwd' },
      { pluginId: 'happy%2F..', version: '1.0.0' },
    ]) {
      const job = await bed.enqueue({ type: 'install.plugin', storeId: 'store-g', payload })
      const done = await bed.waitFinished(job.id)
      expect(done.state, JSON.stringify(payload)).toBe('failed')
      expect(done.attempt).toBe(1)
      expect(done.lastError?.code).toBe('validation_failed')
      expect(done.lastError?.message).toMatch(/install\.plugin/)
    }
    expect(registry.requests.length).toBe(before)
  })

  it('runs two installs of the same plugin for one store one at a time (advisory lock)', async () => {
    const spec = { type: 'install.plugin', storeId: 'store-h', payload: { pluginId: 'concurrent', version: '1.0.0' } }
    const [a, b] = await Promise.all([bed.enqueue(spec), bed.enqueue(spec)])
    const done = await Promise.all([bed.waitFinished(a!.id), bed.waitFinished(b!.id)])
    expect(done.map((j) => j.state)).toEqual(['completed', 'completed'])
    expect(done.map((j) => (j.result as InstallPluginResult).outcome).sort()).toEqual(['already_installed', 'installed'])
    expect(hits(registry, 'concurrent')).toHaveLength(1)
    expect(hits(cdn, 'concurrent')).toHaveLength(1)
    expect(hits(hooks, 'concurrent')).toHaveLength(1)
  })
})
