import type { FastifyBaseLogger } from 'fastify'

/** Options of {@link createPeriodicTask}. */
export interface PeriodicTaskOptions {
  /** Time between the end of one run and the start of the next. */
  readonly intervalMs: number
  /** Delay of the first run after start() (default: the interval). */
  readonly firstDelayMs?: number
  /** One run; a rejection is logged and the next run is scheduled all the same. */
  readonly run: () => Promise<unknown>
  readonly log: FastifyBaseLogger
  /** The log line of a failed run, e.g. `upload sweep failed`. */
  readonly failureMessage: string
}

/** A background job of the API process on a timer. */
export interface PeriodicTask {
  /** Schedules the first run. Calling it again does nothing. */
  start(): void
  /** Cancels the next run and waits for one in progress; no run starts after. */
  stop(): Promise<void>
}

/**
 * A run on a timer that never overlaps itself (the next run is scheduled
 * when one ends), never keeps the process alive on its own (the timer is
 * unref'd), and stops cleanly: `stop()` returns once a run in progress is
 * over. Shared by the API's sweeps and flushes so each says only what one
 * run does.
 *
 * @example
 * const task = createPeriodicTask({ intervalMs: 600_000, run: () => sweep(), log, failureMessage: 'sweep failed' })
 * app.addHook('onReady', async () => task.start())
 * app.addHook('onClose', () => task.stop())
 */
export function createPeriodicTask(options: PeriodicTaskOptions): PeriodicTask {
  let timer: NodeJS.Timeout | null = null
  let running: Promise<unknown> = Promise.resolve()
  let started = false
  let stopped = false

  function schedule(delayMs: number): void {
    if (stopped) return
    timer = setTimeout(() => {
      timer = null
      running = options
        .run()
        .catch((err: unknown) => options.log.error({ err }, options.failureMessage))
        .finally(() => schedule(options.intervalMs))
    }, delayMs)
    timer.unref()
  }

  return {
    start() {
      if (started) return
      started = true
      schedule(options.firstDelayMs ?? options.intervalMs)
    },
    async stop() {
      stopped = true
      if (timer !== null) clearTimeout(timer)
      timer = null
      await running
    },
  }
}
