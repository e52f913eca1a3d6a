import { randomBytes } from 'node:crypto'
import { freePort, useTestDatabase, waitFor } from '@backroom/queue-core/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { listeningUrl, spawnService, type RunningService } from './support/spawn-service.ts'
import { startEchoProvider, type EchoProvider } from './support/start-echo-provider.ts'

/**
 * Known secret strings put everywhere a secret reaches the services: their
 * environment (keys, the database password, provider tokens), request
 * headers, job payloads, and what external services answer. Then every log
 * line the API and worker processes print, every response body and header,
 * and everything stored in the database (job errors, results, progress,
 * shop tables) is searched for them. The API never returns payloads (its
 * job view leaves them out), so a payload's canary may be stored in the
 * job's payload and nowhere else.
 */
const t = useTestDatabase()

/** A canary: its name in reports, and a value found nowhere else by chance. */
const canary = (name: string) => `canary-${name}-${randomBytes(12).toString('hex')}`
const ENV_SECRETS = {
  BACKROOM_ADMIN_KEY: canary('admin-key-0123456789abcdef'),
  CRON_SECRET: canary('cron'),
  METRICS_KEY: canary('metrics'),
  DATABASE_PASSWORD: canary('db-password'),
  DEEPL_API_KEY: canary('deepl'),
  INVENTORY_API_KEY: canary('inventory'),
  PLUGIN_REGISTRY_TOKEN: canary('plugin'),
  MARKETPLACE_API_KEY: canary('marketplace'),
  IMPORT_FEED_AUTH_TOKEN: canary('feed'),
} as const
/** What the fake providers put in every answer. */
const PROVIDER_BODY = canary('provider-body')
/** Sent in request headers, never as a key any route accepts. */
const HEADER_SECRETS = { forgedKey: canary('forged-key'), apiKeyHeader: canary('x-api-key'), cookie: canary('cookie'), proxy: canary('proxy') } as const
/** The callers' own data: in payloads (valid ones, and one a schema refuses by its field name). */
const PAYLOAD_SECRET = canary('payload-api-token')

/** Stores whose jobs run in the API's drain, then in the worker process. */
const DRAIN_STORES = ['canary-store-1', 'canary-store-2', 'canary-store-3', 'canary-store-4', 'canary-store-5']
const WORKER_STORES = ['canary-store-6', 'canary-store-7', 'canary-store-8', 'canary-store-9', 'canary-store-10']

const providers: Record<'deepl' | 'inventory' | 'plugins' | 'feeds' | 'marketplace', EchoProvider> = {} as never
const services: RunningService[] = []
let api: RunningService
let base: string
/** Every answer the API gave in this file: status, headers and body. */
const answers: Array<{ label: string; status: number; text: string }> = []
let platformKey: string
let jobIds: string[] = []

function databaseUrl(password: string): string {
  const url = new URL(t.url)
  url.password = password
  return url.toString()
}

function serviceEnv(): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl(ENV_SECRETS.DATABASE_PASSWORD),
    BACKROOM_ADMIN_KEY: ENV_SECRETS.BACKROOM_ADMIN_KEY,
    CRON_SECRET: ENV_SECRETS.CRON_SECRET,
    METRICS_KEY: ENV_SECRETS.METRICS_KEY,
    // The most verbose level: a secret written at debug or trace is still written.
    LOG_LEVEL: 'trace',
    PORT: '0',
    HANDLER_URL_ALLOWLIST: '127.0.0.1/32',
    DEEPL_API_URL: providers.deepl.url,
    DEEPL_API_KEY: ENV_SECRETS.DEEPL_API_KEY,
    INVENTORY_API_URL: providers.inventory.url,
    INVENTORY_API_KEY: ENV_SECRETS.INVENTORY_API_KEY,
    PLUGIN_REGISTRY_URL: providers.plugins.url,
    PLUGIN_REGISTRY_TOKEN: ENV_SECRETS.PLUGIN_REGISTRY_TOKEN,
    MARKETPLACE_API_URL: providers.marketplace.url,
    MARKETPLACE_API_KEY: ENV_SECRETS.MARKETPLACE_API_KEY,
    IMPORT_FEED_ALLOWED_ORIGINS: providers.feeds.url,
    IMPORT_FEED_AUTH_TOKEN: ENV_SECRETS.IMPORT_FEED_AUTH_TOKEN,
    WORKER_CONCURRENCY: '4',
  }
}

/** A request to the running API; its answer (headers included) is kept for the search. */
async function call(label: string, method: string, path: string, options: { key?: string | null; headers?: Record<string, string>; body?: unknown } = {}): Promise<{ status: number; json: () => any }> {
  const headers: Record<string, string> = { ...(options.key ? { authorization: `Bearer ${options.key}` } : {}), ...options.headers }
  let body: string | undefined
  if (options.body !== undefined) {
    body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body)
    headers['content-type'] ??= 'application/json'
  }
  const res = await fetch(`${base}${path}`, { method, headers, body })
  const text = await res.text()
  answers.push({ label: `${label}: ${method} ${path} → ${res.status}`, status: res.status, text: `${JSON.stringify([...res.headers])}\n${text}` })
  return { status: res.status, json: () => JSON.parse(text) }
}

/** One job of each type that reaches a provider, for `storeId`, failing at its first attempt. */
function providerJobs(storeId: string, n: number): ReadonlyArray<Record<string, unknown>> {
  const common = { storeId, maxAttempts: 1 }
  return [
    // Distinct texts: identical ones would wait on each other in the shared translation memory.
    { ...common, type: 'translation.ui', payload: { sourceLocale: 'en', targetLocales: ['de'], strings: [{ key: 'k', text: `${PAYLOAD_SECRET} ${n}` }] } },
    { ...common, type: 'sync.inventory', payload: { skus: [`sku-${n}`] } },
    { ...common, type: 'install.plugin', payload: { pluginId: `plugin-${n}`, version: '1.0.0' } },
    { ...common, type: 'import.products', payload: { feedUrl: `${providers.feeds.url}/feed-${n}.csv`, format: 'csv' } },
  ]
}

async function enqueueProviderJobs(stores: ReadonlyArray<string>): Promise<string[]> {
  const ids: string[] = []
  for (const [i, storeId] of stores.entries()) {
    const res = await call('enqueue', 'POST', '/v1/jobs/batch', { key: platformKey, body: { jobs: providerJobs(storeId, i) } })
    expect(res.status).toBe(201)
    ids.push(...res.json().jobs.map((j: { job: { id: string } }) => j.job.id))
  }
  return ids
}

async function allFinished(ids: ReadonlyArray<string>): Promise<boolean> {
  for (const id of ids) {
    const res = await call('poll', 'GET', `/v1/jobs/${id}`, { key: platformKey })
    if (!['completed', 'failed', 'cancelled'].includes(res.json().job.state)) return false
  }
  return true
}

beforeAll(async () => {
  providers.deepl = await startEchoProvider(PROVIDER_BODY)
  providers.inventory = await startEchoProvider(PROVIDER_BODY)
  providers.plugins = await startEchoProvider(PROVIDER_BODY)
  providers.feeds = await startEchoProvider(PROVIDER_BODY)
  providers.marketplace = await startEchoProvider(PROVIDER_BODY)
  api = spawnService('api', serviceEnv())
  services.push(api)
  base = await listeningUrl(api)
})
afterAll(async () => {
  for (const service of services) await service.stop()
  for (const provider of Object.values(providers)) await provider?.close()
})

describe('secrets canary', () => {
  it('runs jobs against providers that echo credentials, through the API drain and a worker process', async () => {
    const created = await call('platform key', 'POST', '/v1/keys', { key: ENV_SECRETS.BACKROOM_ADMIN_KEY, body: { label: 'canary run' } })
    expect(created.status).toBe(201)
    platformKey = created.json().key
    const storeKey = (await call('store key', 'POST', '/v1/keys', { key: platformKey, body: { storeId: DRAIN_STORES[0] } })).json().key as string

    // Secrets in headers, on keys no route accepts and on good ones.
    const headers = { 'x-api-key': HEADER_SECRETS.apiKeyHeader, cookie: `session=${HEADER_SECRETS.cookie}`, 'proxy-authorization': `Basic ${HEADER_SECRETS.proxy}` }
    for (const path of ['/v1/jobs', '/v1/stats', '/v1/jobs/1', '/v1/internal/process-pending', '/metrics', '/nowhere']) {
      const method = path === '/v1/internal/process-pending' ? 'POST' : 'GET'
      expect((await call('forged key', method, path, { key: HEADER_SECRETS.forgedKey, headers })).status).toBeGreaterThanOrEqual(400)
      await call('secret headers', method, path, { key: storeKey, headers })
    }
    expect((await call('metrics', 'GET', '/metrics', { key: ENV_SECRETS.METRICS_KEY })).status).toBe(200)

    // A payload the schema refuses because of its secret-named field: the 400 names the path, not the value.
    const refused = await call('payload refused', 'POST', '/v1/jobs', { key: storeKey, body: { type: 'system.canary', payload: { apiToken: PAYLOAD_SECRET } } })
    expect(refused.status).toBe(400)
    const refusedBatch = await call('batch refused', 'POST', '/v1/jobs/batch', { key: storeKey, body: { jobs: [{ type: 'system.canary', payload: { apiToken: PAYLOAD_SECRET } }] } })
    expect(refusedBatch.status).toBe(400)

    // The API's own drain runs the first half (handler code loaded into the API process).
    const drained = await enqueueProviderJobs(DRAIN_STORES)
    await waitFor(
      async () => {
        const res = await call('drain', 'POST', '/v1/internal/process-pending', { key: ENV_SECRETS.CRON_SECRET, body: { maxJobs: 50, budgetMs: 20_000 } })
        expect(res.status).toBe(200)
        return allFinished(drained)
      },
      { timeoutMs: 90_000, intervalMs: 200, what: 'the drain to run every job' },
    )
    // A worker process runs the second half.
    const worker = spawnService('worker', serviceEnv())
    services.push(worker)
    const worked = await enqueueProviderJobs(WORKER_STORES)
    await waitFor(() => allFinished(worked), { timeoutMs: 90_000, intervalMs: 250, what: 'the worker to run every job' })
    jobIds = [...drained, ...worked]

    // Every read the API offers, for every job.
    for (const id of jobIds) await call('read', 'GET', `/v1/jobs/${id}`, { key: platformKey })
    await call('list', 'GET', '/v1/jobs?limit=100', { key: platformKey })
    await call('list failed', 'GET', '/v1/jobs?limit=100&state=failed', { key: platformKey })
    await call('stats', 'GET', '/v1/stats', { key: platformKey })
    await call('store list', 'GET', '/v1/jobs', { key: storeKey })
    await call('docs', 'GET', '/docs/json')
    await call('metrics again', 'GET', '/metrics', { key: ENV_SECRETS.METRICS_KEY })

    // Every provider was reached with its credentials, and answered with them.
    for (const [name, provider] of Object.entries(providers)) {
      if (name === 'marketplace') continue
      expect(provider.requests.length, name).toBeGreaterThanOrEqual(DRAIN_STORES.length + WORKER_STORES.length)
    }
    expect(providers.deepl.requests[0]!.authorization).toBe(`DeepL-Auth-Key ${ENV_SECRETS.DEEPL_API_KEY}`)
    expect(providers.feeds.requests[0]!.authorization).toBe(`Bearer ${ENV_SECRETS.IMPORT_FEED_AUTH_TOKEN}`)
    const states = await Promise.all(jobIds.map(async (id) => (await call('state', 'GET', `/v1/jobs/${id}`, { key: platformKey })).json().job.state as string))
    expect(new Set(states)).toEqual(new Set(['failed']))

    // Shut both down: their shutdown lines are searched too.
    expect(await worker.stop()).toBe(0)
    expect(await api.stop()).toBe(0)
  })

  it('finds no canary in any log line of the API or the worker', () => {
    const logs = services.map((s) => s.output()).join('\n')
    expect(logs.length).toBeGreaterThan(10_000)
    const found = Object.entries({ ...ENV_SECRETS, ...HEADER_SECRETS, PROVIDER_BODY, PAYLOAD_SECRET })
      .filter(([, secret]) => logs.includes(secret))
      .map(([name, secret]) => `${name}: ${logs.split('\n').find((line) => line.includes(secret))!.slice(0, 400)}`)
    expect(found).toEqual([])
  })

  it('finds no canary in any answer (payloads are never returned by the API)', () => {
    expect(answers.length).toBeGreaterThan(50)
    const found: string[] = []
    for (const [name, secret] of Object.entries({ ...ENV_SECRETS, ...HEADER_SECRETS, PROVIDER_BODY, PAYLOAD_SECRET })) {
      const answer = answers.find((a) => a.text.includes(secret))
      if (answer) found.push(`${name} in ${answer.label}: ${answer.text.slice(0, 300)}`)
    }
    expect(found).toEqual([])
  })

  it('stores no canary, except a payload in its own job\'s payload (and texts to translate in the translation memory)', async () => {
    const { rows: tables } = await t.db.pool.query<{ schema: string; name: string }>(
      `select n.nspname as schema, c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
       where n.nspname in ('public', 'shop') and c.relkind in ('r', 'p') and not c.relispartition order by 1, 2`,
    )
    const found: string[] = []
    let payloads = ''
    for (const { schema, name } of tables) {
      const table = `"${schema}"."${name}"`
      // Job rows without their payload: errors, results and progress must hold no canary at all.
      const jobTable = schema === 'public' && (name === 'jobs' || name === 'job_history')
      const { rows } = await t.db.pool.query<{ text: string }>(
        `select coalesce(string_agg(${jobTable ? `(to_jsonb(t) - 'payload')::text` : 't::text'}, '\n'), '') as text from ${table} t`,
      )
      if (jobTable) payloads += (await t.db.pool.query<{ text: string }>(`select coalesce(string_agg(payload::text, '\n'), '') as text from ${table}`)).rows[0]!.text
      // The shared translation memory keeps the texts it was asked to translate (0002_translations.sql): payload data by design.
      const payloadHome = schema === 'shop' && name === 'translation_memory'
      for (const [secret, value] of Object.entries({ ...ENV_SECRETS, ...HEADER_SECRETS, PROVIDER_BODY, ...(payloadHome ? {} : { PAYLOAD_SECRET }) })) {
        if (rows[0]!.text.includes(value)) found.push(`${secret} in ${schema}.${name}`)
      }
    }
    expect(found).toEqual([])
    // The canary did reach the database where it belongs: the search looked in the right place.
    expect(payloads).toContain(PAYLOAD_SECRET)
    expect(jobIds.length).toBe((DRAIN_STORES.length + WORKER_STORES.length) * 4)
  })

  it('names no secret when a service cannot start: a bad setting, or a database that does not answer', async () => {
    const shortSecrets = { CRON_SECRET: canary('c').slice(0, 15), BACKROOM_ADMIN_KEY: canary('a').slice(0, 31), METRICS_KEY: canary('m').slice(0, 15) }
    const closed = new URL(databaseUrl(ENV_SECRETS.DATABASE_PASSWORD))
    closed.port = String(await freePort())
    const cases: ReadonlyArray<readonly [string, Record<string, string>]> = [
      ['bad settings', { ...serviceEnv(), ...shortSecrets, DATABASE_URL: `https://user:${ENV_SECRETS.DATABASE_PASSWORD}@db.example.test/x` }],
      ['no database', { ...serviceEnv(), DATABASE_URL: closed.toString() }],
    ]
    for (const [label, env] of cases) {
      for (const name of ['api', 'worker'] as const) {
        const service = spawnService(name, env)
        services.push(service)
        const code = await service.exitWithin(60_000)
        expect(code, `${name}, ${label}: ${service.output().slice(-500)}`).toBe(1)
        const output = service.output()
        expect(output, `${name}, ${label}`).toMatch(/"msg":"(invalid configuration|startup failed)"/)
        const found = Object.entries({ ...ENV_SECRETS, ...shortSecrets }).filter(([, secret]) => output.includes(secret))
        expect(found.map(([key]) => `${key} in the ${name}'s output (${label})`)).toEqual([])
      }
    }
  })
})
