import { describe, expect, it } from 'vitest'
import { createStoreGate, GateRefusedError, type ReleaseSlot } from './store-gate.ts'

const STORE = { running: 2, queued: 3 }

/** Whether a promise has settled, without waiting for it (after the microtasks queued so far). */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false
  void promise.then(
    () => (done = true),
    () => (done = true),
  )
  await new Promise((resolve) => setImmediate(resolve))
  return done
}

describe('createStoreGate', () => {
  it('runs at most `capacity` requests, and at most its limit of one tenant', async () => {
    const gate = createStoreGate({ capacity: 3, maxWaitMs: 60_000 })
    const a1 = await gate.acquire('a', STORE)
    await gate.acquire('a', STORE)
    const a3 = gate.acquire('a', STORE)
    expect(await settled(a3), "a's third waits for one of its own").toBe(false)
    await gate.acquire('b', STORE)
    expect(gate.load()).toEqual({ running: 3, waiting: 1 })
    const c = gate.acquire('c', STORE)
    expect(await settled(c), 'the gate is full').toBe(false)
    a1()
    // The freed slot goes to c (none running), not to a's own waiter (two running).
    expect(await settled(c)).toBe(true)
    expect(await settled(a3)).toBe(false)
  })

  it('gives a freed slot to the tenant with the fewest running, the longest waiting among equals', async () => {
    const gate = createStoreGate({ capacity: 3, maxWaitMs: 60_000 })
    const flood = { running: 3, queued: 10 }
    const held = [await gate.acquire('flood', flood), await gate.acquire('flood', flood), await gate.acquire('flood', flood)]
    const order: string[] = []
    const granted = (name: string) => (release: ReleaseSlot) => (order.push(name), release)
    const floods = Array.from({ length: 3 }, () => gate.acquire('flood', flood).then(granted('flood')))
    const x = gate.acquire('x', STORE).then(granted('x'))
    const y = gate.acquire('y', STORE).then(granted('y'))
    held[0]!()
    await settled(x)
    held[1]!()
    await settled(y)
    // x and y came after the flood's three waiters, and went first: none running beats the flood's one or two.
    expect(order).toEqual(['x', 'y'])
    held[2]!()
    await settled(floods[0]!)
    // Now every tenant has one running: the flood's waiter, the oldest, goes next.
    expect(order).toEqual(['x', 'y', 'flood'])
    for (const r of await Promise.all([x, y, floods[0]!])) r()
    for (const r of await Promise.all(floods)) r()
    expect(gate.load()).toEqual({ running: 0, waiting: 0 })
  })

  it('refuses at once past the tenant\'s queue, after maxWaitMs, or when the caller goes away; a release counts once', async () => {
    const gate = createStoreGate({ capacity: 1, maxWaitMs: 50 })
    const release = await gate.acquire('a', STORE)
    const waiting = [gate.acquire('a', STORE), gate.acquire('a', STORE), gate.acquire('a', STORE)]
    await expect(gate.acquire('a', STORE)).rejects.toMatchObject({ reason: 'queue_full' })
    await expect(Promise.all(waiting)).rejects.toBeInstanceOf(GateRefusedError)
    const results = await Promise.allSettled(waiting)
    expect(results.map((r) => (r.status === 'rejected' ? (r.reason as GateRefusedError).reason : 'granted'))).toEqual(['timeout', 'timeout', 'timeout'])

    const gone = new AbortController()
    const left = gate.acquire('b', STORE, gone.signal)
    gone.abort()
    await expect(left).rejects.toMatchObject({ reason: 'aborted' })
    expect(gate.load()).toEqual({ running: 1, waiting: 0 })
    release()
    release()
    expect(gate.load()).toEqual({ running: 0, waiting: 0 })
    // A second release did not make room for two.
    await gate.acquire('c', STORE)
    expect(await settled(gate.acquire('d', STORE))).toBe(false)
  })
})
