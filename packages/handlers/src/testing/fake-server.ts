import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * The URL guard's allow-list entry for fake servers (HANDLER_URL_ALLOWLIST):
 * they listen on 127.0.0.1, which the guard refuses to everyone else. The
 * test bed sets it; tests of the guard itself set their own, narrower one.
 */
export const FAKE_SERVER_ALLOWLIST = '127.0.0.1/32'

/** A request as a fake service saw it. */
export interface SeenRequest {
  readonly method: string
  readonly path: string
  readonly headers: IncomingMessage['headers']
  readonly body: string
}

/** A small HTTP server on 127.0.0.1 standing in for an external service in tests. */
export interface FakeServer {
  /** `http://127.0.0.1:<port>` (the host and port it listens on) */
  readonly url: string
  /** Every request received, in order. */
  readonly requests: SeenRequest[]
  close(): Promise<void>
}

/**
 * Starts a real HTTP server on an ephemeral port of 127.0.0.1 (or on
 * `listen.host` / `listen.port`: another loopback address, a given port).
 * `handle` gets each request with its body read, and answers through `res`
 * (status, headers, slow or malformed bodies: whatever the test needs).
 *
 * @example
 * const server = await startFakeServer((req, res) => {
 *   res.writeHead(429, { 'retry-after': '2' }).end()
 * })
 */
export async function startFakeServer(
  handle: (req: SeenRequest, res: ServerResponse) => void | Promise<void>,
  listen: { readonly host?: string; readonly port?: number } = {},
): Promise<FakeServer> {
  const host = listen.host ?? '127.0.0.1'
  const requests: SeenRequest[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const seen: SeenRequest = {
        method: req.method ?? 'GET',
        path: req.url ?? '/',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      }
      requests.push(seen)
      Promise.resolve(handle(seen, res)).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500)
        res.end(String(err))
      })
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(listen.port ?? 0, host, resolve)
  })
  const { port } = server.address() as AddressInfo
  return {
    url: `http://${host}:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
