import { readFileSync } from 'node:fs'

/**
 * Calls `callback` once when this process's parent or grandparent goes away
 * (checked twice a second). Why: pnpm answers SIGTERM by killing only its
 * direct child (`sh -c tsx …`) and exiting; tsx and this process live on
 * with no signal at all. Linux only (reads /proc); elsewhere it does nothing.
 */
export function onOrphaned(callback: () => void, intervalMs = 500): void {
  const parent = process.ppid
  const grandparent = parentOf(parent)
  if (grandparent === null) return
  const timer = setInterval(() => {
    if (process.ppid === parent && parentOf(parent) === grandparent) return
    clearInterval(timer)
    callback()
  }, intervalMs)
  timer.unref()
}

/** The parent pid of `pid` from /proc, or null when unknown. */
function parentOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // "pid (comm) state ppid …": comm may contain spaces and parentheses, so split after the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
    return Number.isInteger(ppid) ? ppid : null
  } catch {
    return null
  }
}
