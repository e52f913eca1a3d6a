import { Writable } from 'node:stream'
import { waitFor } from '@backroom/queue-core/testing'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { createPeriodicTask } from './periodic-task.ts'

function capturingLog(lines: string[]) {
  return pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString('utf8'))
        done()
      },
    }),
  )
}

describe('createPeriodicTask', () => {
  it('runs again and again without overlapping itself, goes on after a failed run, and stop() waits for the run in progress', async () => {
    const lines: string[] = []
    let runs = 0
    let active = 0
    let mostActive = 0
    let release: (() => void) | null = null
    const task = createPeriodicTask({
      intervalMs: 1,
      log: capturingLog(lines),
      failureMessage: 'test run failed',
      run: async () => {
        runs++
        active++
        mostActive = Math.max(mostActive, active)
        try {
          // Each run outlasts the interval many times over.
          await new Promise((r) => setTimeout(r, 10))
          if (runs === 2) throw new Error('second run fails')
          if (runs === 5) await new Promise<void>((r) => (release = r))
        } finally {
          active--
        }
      },
    })
    task.start()
    task.start()
    await waitFor(() => release !== null, { what: 'the fifth run to start' })
    let stopped = false
    const stopping = task.stop().then(() => (stopped = true))
    await new Promise((r) => setTimeout(r, 30))
    expect(stopped).toBe(false)
    release!()
    await stopping
    await new Promise((r) => setTimeout(r, 30))
    expect(runs).toBe(5)
    expect(mostActive).toBe(1)
    expect(lines.filter((l) => l.includes('test run failed'))).toHaveLength(1)
  })
})
