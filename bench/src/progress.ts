/** One overwritten status line on a TTY, plain lines otherwise (CI logs). */
export function progress(message: string): void {
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${message}`)
  else process.stderr.write(`${message}\n`)
}

/** Ends the status line. */
export function progressDone(): void {
  if (process.stderr.isTTY) process.stderr.write('\n')
}
