// pnpm bench [--quick]: runs every workload against every system on fresh
// databases of one PostgreSQL server and prints a results table.
import { freshDatabase, serverSettings, serverUrl } from './database.ts'
import { progress, progressDone } from './progress.ts'
import { backroom } from './systems/backroom.ts'
import { graphileDefaults, graphileFast } from './systems/graphile-worker.ts'
import { pgBossDefaults, pgBossFast } from './systems/pg-boss.ts'
import type { BenchSystem } from './systems/system.ts'
import { drain } from './workloads/drain.ts'
import { enqueueBulk, enqueueSingle } from './workloads/enqueue.ts'

const quick = process.argv.includes('--quick')
// --systems=backroom,pgboss,graphile,graphile-defaults picks systems by exact name.
// Without it, every system runs except pgboss-defaults: its 2 s polling caps a drain
// at concurrency / 2 jobs/s per process (the c=10 p=1 quick drain alone takes 10 minutes).
const allSystems = [backroom, pgBossFast, pgBossDefaults, graphileFast, graphileDefaults]
const systemsArg = process.argv.find((a) => a.startsWith('--systems='))?.slice('--systems='.length)
const wanted = systemsArg?.split(',').map((s) => s.trim()).filter(Boolean) ?? null
const known = allSystems.map((make) => make().name)
const unknown = wanted?.filter((w) => !known.includes(w)) ?? []
if (unknown.length > 0) throw new Error(`unknown system(s) ${unknown.join(', ')}; known: ${known.join(', ')}`)
const selected = allSystems.filter((make) => (wanted ? wanted.includes(make().name) : make().name !== 'pgboss-defaults'))
const sizes = quick
  ? { bulk: 5_000, single: 300, drain: 3_000, runs: 1 }
  : { bulk: 100_000, single: 5_000, drain: 100_000, runs: 3 }

interface Row {
  readonly workload: string
  readonly system: string
  readonly value: number
  readonly unit: string
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

async function withSystem<T>(make: () => BenchSystem, fn: (s: BenchSystem) => Promise<T>): Promise<T> {
  const system = make()
  const db = await freshDatabase(system.name)
  try {
    await system.setup(db.url)
    return await fn(system)
  } finally {
    await system.close()
    await db.drop()
  }
}

async function main() {
  const rows: Row[] = []
  const failures: string[] = []
  const systems = selected
  for (const make of systems) {
    const name = make().name
    const bulk: number[] = []
    const single: number[] = []
    for (let r = 0; r < sizes.runs; r++) {
      bulk.push(await withSystem(make, (s) => enqueueBulk(s, sizes.bulk)))
      single.push(await withSystem(make, (s) => enqueueSingle(s, sizes.single)))
    }
    rows.push({ workload: `enqueue bulk ${sizes.bulk}`, system: name, value: median(bulk), unit: 'jobs/s' })
    rows.push({ workload: `enqueue single ${sizes.single}`, system: name, value: median(single), unit: 'jobs/s' })
    for (const processes of [1, 4]) {
      for (const concurrency of [10, 50]) {
        const rates: number[] = []
        for (let r = 0; r < sizes.runs; r++) {
          const result = await withSystem(make, (s) => drain(s, { n: sizes.drain, concurrency, processes }))
          if (result.completed !== sizes.drain || result.handled !== sizes.drain || result.anomalies !== 0) {
            failures.push(`${name} drain c=${concurrency} p=${processes}: ${JSON.stringify(result)}`)
          }
          rates.push(result.jobsPerSec)
        }
        rows.push({ workload: `drain ${sizes.drain} c=${concurrency} p=${processes}`, system: name, value: median(rates), unit: 'jobs/s' })
      }
    }
  }
  progressDone()
  const settings = await serverSettings(serverUrl())
  console.log(`\nPostgreSQL ${settings.server_version}; fsync=${settings.fsync}; synchronous_commit=${settings.synchronous_commit}`)
  console.log('| workload | system | result |')
  console.log('|---|---|---|')
  for (const r of rows) console.log(`| ${r.workload} | ${r.system} | ${Math.round(r.value).toLocaleString('en-US')} ${r.unit} |`)
  if (failures.length > 0) {
    console.error(`\ncorrectness failures:\n${failures.join('\n')}`)
    process.exit(1)
  }
  progress('done')
  progressDone()
}

await main()
