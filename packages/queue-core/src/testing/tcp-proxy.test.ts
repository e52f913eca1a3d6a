import net from 'node:net'
import { once } from 'node:events'
import { afterEach, describe, expect, it } from 'vitest'
import { waitFor } from './fixtures.ts'
import { startTcpProxy, type TcpProxy } from './tcp-proxy.ts'

/** An echo server on 127.0.0.1 that also reports which of its connections closed. */
async function startEchoServer() {
  const sockets = new Set<net.Socket>()
  let closed = 0
  const server = net.createServer((s) => {
    sockets.add(s)
    s.on('error', () => {})
    s.on('data', (chunk) => s.write(chunk))
    s.on('close', () => {
      sockets.delete(s)
      closed++
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    port: (server.address() as net.AddressInfo).port,
    get open() {
      return sockets.size
    },
    get closed() {
      return closed
    },
    async close() {
      for (const s of sockets) s.destroy()
      await new Promise((r) => server.close(r))
    },
  }
}

/** A client socket that records what it received and how it ended. */
async function dial(port: number) {
  const socket = net.connect({ host: '127.0.0.1', port })
  const seen = { data: '', ended: false, error: null as string | null, closed: false }
  socket.setEncoding('utf8')
  socket.on('data', (d: string) => (seen.data += d))
  socket.on('end', () => (seen.ended = true))
  socket.on('error', (err: NodeJS.ErrnoException) => (seen.error = err.code ?? err.message))
  socket.on('close', () => (seen.closed = true))
  await once(socket, 'connect')
  return { socket, seen }
}

/** What can only be shown by waiting: that nothing arrives. Kept short. */
const QUIET_MS = 300

let echo: Awaited<ReturnType<typeof startEchoServer>>
let proxy: TcpProxy
const clients: net.Socket[] = []

async function setup() {
  echo = await startEchoServer()
  proxy = await startTcpProxy({ host: '127.0.0.1', port: echo.port })
}

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy()
  await proxy?.close()
  await echo?.close()
})

async function open() {
  const c = await dial(proxy.port)
  clients.push(c.socket)
  return c
}

describe('startTcpProxy', () => {
  it('forwards bytes both ways and counts connections', async () => {
    await setup()
    const a = await open()
    const b = await open()
    a.socket.write('hello')
    b.socket.write('world')
    await waitFor(() => a.seen.data === 'hello' && b.seen.data === 'world', { timeoutMs: 5_000, what: 'echoes' })
    expect(proxy.counts()).toMatchObject({ accepted: 2, open: 2, held: 0, dead: 0, cut: 0 })
    a.socket.end()
    await waitFor(() => proxy.counts().open === 1 && echo.open === 1, { timeoutMs: 5_000, what: 'one link closed on both sides' })
  })

  it('rewrites a connection string to go through it', async () => {
    await setup()
    expect(proxy.urlFor('postgres://u:p@db.example:5432/test?sslmode=disable')).toBe(
      `postgres://u:p@127.0.0.1:${proxy.port}/test?sslmode=disable`,
    )
  })

  it('cutAll resets every open connection on both sides and still accepts new ones', async () => {
    await setup()
    const a = await open()
    const b = await open()
    a.socket.write('x')
    await waitFor(() => a.seen.data === 'x' && echo.open === 2, { timeoutMs: 5_000, what: 'both linked' })
    expect(proxy.cutAll()).toBe(2)
    await waitFor(() => a.seen.closed && b.seen.closed && echo.open === 0, { timeoutMs: 5_000, what: 'both sides reset' })
    expect(a.seen.error).toBe('ECONNRESET')
    expect(b.seen.error).toBe('ECONNRESET')
    const c = await open()
    c.socket.write('again')
    await waitFor(() => c.seen.data === 'again', { timeoutMs: 5_000, what: 'echo after the cut' })
    expect(proxy.counts()).toMatchObject({ accepted: 3, open: 1, cut: 2 })
  })

  it('blackhole holds every byte with no FIN or RST, and a resumed link delivers them', async () => {
    await setup()
    const a = await open()
    a.socket.write('before')
    await waitFor(() => a.seen.data === 'before', { timeoutMs: 5_000, what: 'first echo' })
    proxy.blackhole(true)
    a.socket.write('during')
    // A new connection is accepted (the client's connect succeeds) but nothing reaches the server.
    const late = await open()
    late.socket.write('late')
    await new Promise((r) => setTimeout(r, QUIET_MS))
    expect(a.seen).toEqual({ data: 'before', ended: false, error: null, closed: false })
    expect(late.seen).toEqual({ data: '', ended: false, error: null, closed: false })
    expect(echo.open).toBe(1)
    expect(proxy.counts()).toMatchObject({ open: 2, held: 2 })

    proxy.blackhole(false, { resume: true })
    await waitFor(() => a.seen.data === 'beforeduring' && late.seen.data === 'late', { timeoutMs: 5_000, what: 'held bytes delivered' })
    expect(proxy.counts()).toMatchObject({ open: 2, held: 0, dead: 0 })
  })

  it('after a blackhole, held links are dead: the server side closes, the client hears nothing', async () => {
    await setup()
    const a = await open()
    a.socket.write('before')
    await waitFor(() => a.seen.data === 'before' && echo.open === 1, { timeoutMs: 5_000, what: 'first echo' })
    proxy.blackhole(true)
    const late = await open()
    proxy.blackhole(false)
    await waitFor(() => echo.closed === 1 && echo.open === 0, { timeoutMs: 5_000, what: 'server side closed' })
    a.socket.write('after')
    late.socket.write('after')
    const fresh = await open()
    fresh.socket.write('fresh')
    await waitFor(() => fresh.seen.data === 'fresh', { timeoutMs: 5_000, what: 'a new connection flows' })
    await new Promise((r) => setTimeout(r, QUIET_MS))
    expect(a.seen).toEqual({ data: 'before', ended: false, error: null, closed: false })
    expect(late.seen).toEqual({ data: '', ended: false, error: null, closed: false })
    expect(proxy.counts()).toMatchObject({ open: 3, held: 0, dead: 2 })
    // The client giving up on a dead link is noticed, and the link forgotten.
    a.socket.end()
    await waitFor(() => proxy.counts().dead === 1, { timeoutMs: 5_000, what: 'dead link forgotten' })
  })

  it('refuse makes connecting fail at once and leaves open connections alone', async () => {
    await setup()
    const a = await open()
    await proxy.refuse(true)
    const refused = net.connect({ host: '127.0.0.1', port: proxy.port })
    const [err] = (await once(refused, 'error')) as [NodeJS.ErrnoException]
    expect(err.code).toBe('ECONNREFUSED')
    a.socket.write('still')
    await waitFor(() => a.seen.data === 'still', { timeoutMs: 5_000, what: 'open link still forwards' })
    await proxy.refuse(false)
    const b = await open()
    b.socket.write('back')
    await waitFor(() => b.seen.data === 'back', { timeoutMs: 5_000, what: 'listening again' })
  })
})
