import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

/** A request as the fake provider saw it. */
export interface EchoedRequest {
  readonly method: string
  readonly path: string
  readonly authorization: string | undefined
}

/** An external service on 127.0.0.1 that refuses everything and repeats the caller's credentials back. */
export interface EchoProvider {
  /** `http://127.0.0.1:<port>` */
  readonly url: string
  readonly requests: EchoedRequest[]
  close(): Promise<void>
}

/**
 * How the provider answers its n-th request, in turn: every way a refusal
 * can carry text back (a JSON or plain error body, a 5xx, a 200 of the wrong
 * shape, a challenge header). Each answer holds `canary` and the request's
 * own Authorization value, as careless real services do ("invalid key
 * abc…"): whatever the caller logs or stores of an answer shows up.
 */
const ANSWERS: ReadonlyArray<(echo: string) => { status: number; headers: Record<string, string>; body: string }> = [
  (echo) => ({ status: 401, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ message: `invalid credentials: ${echo}` }) }),
  (echo) => ({ status: 403, headers: { 'content-type': 'text/plain' }, body: `forbidden for ${echo}` }),
  (echo) => ({ status: 500, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ error: `internal failure handling ${echo}` }) }),
  (echo) => ({ status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ unexpected: echo, translations: [{ wrong: echo }] }) }),
  (echo) => ({ status: 422, headers: { 'content-type': 'application/json', 'x-debug-token': echo }, body: JSON.stringify({ errors: [{ detail: echo }] }) }),
]

/**
 * Starts the fake provider on an ephemeral port of 127.0.0.1.
 *
 * @example
 * const deepl = await startEchoProvider('CANARY-deepl-body')
 * // DEEPL_API_URL: deepl.url
 */
export async function startEchoProvider(canary: string): Promise<EchoProvider> {
  const requests: EchoedRequest[] = []
  const server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      const authorization = req.headers.authorization
      requests.push({ method: req.method ?? 'GET', path: req.url ?? '/', authorization })
      const answer = ANSWERS[(requests.length - 1) % ANSWERS.length]!(`${canary} ${authorization ?? ''} ${req.url ?? ''}`)
      res.writeHead(answer.status, answer.headers).end(answer.body)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
