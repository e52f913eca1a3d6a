import { Writable } from 'node:stream'
import { pino, type Level, type Logger } from 'pino'
import { REDACT_PATHS } from '@backroom/queue-core/runtime'

/**
 * A pino logger like server.ts's (the same redaction) that writes each line
 * into `lines`, for tests that read what the API logged.
 */
export function capturingLogger(lines: string[], level: Level = 'debug'): Logger {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString('utf8'))
      done()
    },
  })
  return pino({ level, redact: { paths: [...REDACT_PATHS], censor: '[redacted]' } }, sink)
}
