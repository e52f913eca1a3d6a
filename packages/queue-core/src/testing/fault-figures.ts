import { appendFileSync } from 'node:fs'

/**
 * Records one fault test's figures. Always printed as one line on stdout
 * (`fault figures <suite>: {...}`), so a CI log shows them; when
 * `FAULTS_REPORT` names a file, also appended to it as a JSON line, from
 * which `pnpm test:faults` writes the faults section of BENCHMARKS.md.
 * Several test files (processes) may append at once: each line is one
 * write, and a JSON line is far below the size the kernel writes atomically
 * to a file opened for appending.
 *
 * @example
 * recordFaultFigures('connection cuts', { jobs: 4240, throughputRatio: 0.94 })
 */
export function recordFaultFigures(suite: string, figures: Readonly<Record<string, unknown>>): void {
  const line = { suite, at: new Date().toISOString(), scale: Number(process.env.FAULTS_SCALE ?? 1), figures }
  process.stdout.write(`fault figures ${suite}: ${JSON.stringify(figures)}\n`)
  const file = process.env.FAULTS_REPORT
  if (file) appendFileSync(file, `${JSON.stringify(line)}\n`)
}
