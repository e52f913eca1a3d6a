// A DeepL stand-in on 127.0.0.1 for the soak's translation.ui jobs: answers
// /v2/translate like the real service (one translation per text), after a
// short random delay so the handler holds its slot as it would over a network.
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

/** The key the workers are given and the fake checks. */
export const FAKE_DEEPL_KEY = 'soak-deepl-key'

/** A running fake DeepL. */
export interface FakeDeepl {
  /** Base URL for DEEPL_API_URL. */
  readonly url: string
  /** Translate requests answered 200, and refused (anything else). Counters only: a soak keeps no request log. */
  readonly counts: { answered: number; refused: number }
  close(): Promise<void>
}

/** Starts the fake on an ephemeral port. */
export async function startFakeDeepl(): Promise<FakeDeepl> {
  const counts = { answered: 0, refused: 0 }
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const refuse = (status: number) => {
        counts.refused++
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ message: 'refused' }))
      }
      if (req.method !== 'POST' || req.url !== '/v2/translate') return refuse(404)
      if (req.headers.authorization !== `DeepL-Auth-Key ${FAKE_DEEPL_KEY}`) return refuse(403)
      let body: { text?: unknown; target_lang?: unknown }
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof body
      } catch {
        return refuse(400)
      }
      if (!Array.isArray(body.text) || typeof body.target_lang !== 'string') return refuse(400)
      const target = body.target_lang
      const texts = body.text as unknown[]
      setTimeout(() => {
        counts.answered++
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ translations: texts.map((t) => ({ detected_source_language: 'EN', text: `[${target}] ${String(t)}` })) }))
      }, 5 + Math.floor(Math.random() * 45))
    })
  })
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    counts,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
