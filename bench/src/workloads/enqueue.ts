import type { BenchJob, BenchSystem } from '../systems/system.ts'
import { progress } from '../progress.ts'

/** `n` jobs spread over `stores` stores, each with a small payload. */
export function makeJobs(n: number, stores: number): BenchJob[] {
  return Array.from({ length: n }, (_, i) => ({ storeId: `store-${i % stores}`, payload: { i } }))
}

/** Bulk enqueue of `n` jobs through the system's bulk API; jobs/s. */
export async function enqueueBulk(system: BenchSystem, n: number): Promise<number> {
  const jobs = makeJobs(n, 100)
  progress(`${system.name}: bulk enqueue ${n}`)
  const t0 = performance.now()
  await system.enqueueBulk(jobs)
  return n / ((performance.now() - t0) / 1000)
}

/** `n` single enqueues one after another; jobs/s. */
export async function enqueueSingle(system: BenchSystem, n: number): Promise<number> {
  const jobs = makeJobs(n, 100)
  const t0 = performance.now()
  for (let i = 0; i < n; i++) {
    if (i % 500 === 0) progress(`${system.name}: single enqueue ${i}/${n}`)
    await system.enqueueOne(jobs[i]!)
  }
  return n / ((performance.now() - t0) / 1000)
}
