import { readFileSync, writeFileSync } from 'node:fs'

/**
 * Replaces the text between `begin` and `end` in `file` with `body` (markers
 * kept), or appends `## heading` and the marked section when the markers are
 * missing. Used for the BENCHMARKS.md sections that one command owns, so a
 * rerun replaces its own figures and leaves everything else alone.
 */
export function writeMarkedSection(args: {
  readonly file: string
  readonly begin: string
  readonly end: string
  readonly heading: string
  readonly body: string
}): void {
  const text = readFileSync(args.file, 'utf8')
  const section = `${args.begin}\n${args.body}\n${args.end}`
  const begin = text.indexOf(args.begin)
  const end = text.indexOf(args.end)
  const next =
    begin >= 0 && end > begin
      ? text.slice(0, begin) + section + text.slice(end + args.end.length)
      : `${text.trimEnd()}\n\n## ${args.heading}\n\n${section}\n`
  writeFileSync(args.file, next)
}
