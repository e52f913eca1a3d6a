// The status line: what is running now. On a TTY one overwritten line, redrawn every
// second with the time spent in the current step; otherwise (CI logs) plain lines,
// at most one a second, and a "still running" line when a step is quiet for 15 s.

/** The step the runner is in (e.g. `[3/8] drain · backroom run 2/3`), shown before every message. */
let context = ''
let contextSince = performance.now()
let message = ''
let shown = false
let lastPrinted = ''
let lastPrintedAt = 0
let heartbeat: NodeJS.Timeout | null = null

const tty = () => process.stderr.isTTY === true

/** The current line, cut to `width` characters (keeping the elapsed time) when given. */
function text(width = Number.POSITIVE_INFINITY): string {
  const parts = [context, message].filter(Boolean).join(' · ')
  const seconds = Math.floor((performance.now() - contextSince) / 1000)
  const suffix = seconds > 0 ? ` (${seconds}s)` : ''
  const room = width - suffix.length - 1
  return `${parts.length > room ? `${parts.slice(0, Math.max(0, room - 1))}…` : parts}${suffix}`
}

function render(force: boolean): void {
  if (!context && !message) return
  if (tty()) {
    process.stderr.write(`\r\x1b[K${text(Math.max(40, process.stderr.columns || 120))}`)
    shown = true
    return
  }
  const line = text()
  const bare = [context, message].filter(Boolean).join(' · ')
  const now = performance.now()
  const changed = bare !== lastPrinted
  if ((changed && (force || now - lastPrintedAt >= 1000)) || now - lastPrintedAt >= 15_000) {
    process.stderr.write(`${changed ? line : `${line} still running`}\n`)
    lastPrinted = bare
    lastPrintedAt = now
  }
}

function startHeartbeat(): void {
  if (heartbeat) return
  heartbeat = setInterval(() => render(false), 1000)
  heartbeat.unref()
}

/** Sets the step shown before every message, and restarts its clock. */
export function progressContext(step: string): void {
  context = step
  contextSince = performance.now()
  message = ''
  render(true)
  startHeartbeat()
}

/** Replaces the message of the current step. */
export function progress(next: string): void {
  message = next
  render(false)
  startHeartbeat()
}

/** Ends the status line (before printing results) until the next progress call. */
export function progressDone(): void {
  if (heartbeat) clearInterval(heartbeat)
  heartbeat = null
  if (tty() && shown) process.stderr.write('\n')
  shown = false
  context = ''
  message = ''
}
