import net from 'node:net'

/** Where a {@link TcpProxy} forwards to. */
export interface TcpProxyTarget {
  readonly host: string
  readonly port: number
}

/** A proxy's client connections, counted. */
export interface TcpProxyCounts {
  /** Accepted since the proxy started. */
  readonly accepted: number
  /** Open now: forwarding, held by a blackhole, or left dead by one. */
  readonly open: number
  /** Held by the blackhole now (no byte crosses). */
  readonly held: number
  /** Left dead by a blackhole that ended: open on the client's side, answered by nobody. */
  readonly dead: number
  /** Reset by cutAll() since the proxy started. */
  readonly cut: number
}

/**
 * A TCP proxy on 127.0.0.1 between tests and a real server, with network
 * faults on demand. Every fault acts on the TCP stream itself, so the client
 * under test meets it exactly as it would a real network's.
 */
export interface TcpProxy {
  readonly host: '127.0.0.1'
  readonly port: number
  /** `url` with its host and port replaced by the proxy's (a connection string through the proxy). */
  urlFor(url: string): string
  /** Resets every open connection (RST on both sides); new ones are still accepted. Returns how many. */
  cutAll(): number
  /**
   * On: no byte crosses in either direction, and new connections are accepted
   * but never answered; nobody gets a FIN or an RST, as when the network dies.
   * Off: new connections flow again. Connections caught in the blackhole stay
   * dead on the client's side while the server's side is closed, as after a
   * failover (the server they reached is gone and nothing tells the client);
   * with `resume: true` they flow again instead, as after a partition that healed.
   */
  blackhole(on: boolean, options?: { readonly resume?: boolean }): void
  /** On: the port stops listening, so connecting fails at once (ECONNREFUSED); open connections are untouched. */
  refuse(on: boolean): Promise<void>
  counts(): TcpProxyCounts
  /** Stops listening and resets every connection. */
  close(): Promise<void>
}

type LinkState = 'open' | 'held' | 'dead'

/** One client connection and its upstream twin. */
interface Link {
  readonly client: net.Socket
  upstream: net.Socket | null
  state: LinkState
}

/**
 * Starts a {@link TcpProxy} on a free port of 127.0.0.1 forwarding to `target`.
 *
 * @example
 * const proxy = await startTcpProxy({ host: '127.0.0.1', port: 5432 })
 * const db = connect({ connectionString: proxy.urlFor(url) })
 * proxy.blackhole(true)
 */
export async function startTcpProxy(target: TcpProxyTarget): Promise<TcpProxy> {
  const links = new Set<Link>()
  let accepted = 0
  let cut = 0
  let blackholed = false
  let server: net.Server | null = null

  const forget = (link: Link) => {
    if (link.client.destroyed && (link.upstream === null || link.upstream.destroyed)) links.delete(link)
  }

  /** Copies `from` to `to` while the link is open, with backpressure, passing FIN and RST on. */
  const relay = (link: Link, from: net.Socket, to: () => net.Socket | null) => {
    from.on('data', (chunk: Buffer) => {
      const sink = to()
      if (link.state === 'open' && sink && !sink.write(chunk)) {
        from.pause()
        sink.once('drain', () => {
          if (link.state === 'open') from.resume()
        })
      }
    })
    from.on('end', () => {
      if (link.state === 'open') to()?.end()
    })
    // Errors are the peer's business; without a listener they would crash the test process.
    from.on('error', () => {})
    from.on('close', (hadError) => {
      const other = to()
      // Held or dead: the other side must not learn of it, as on a dead network.
      if (link.state === 'open' && other && !other.destroyed) {
        if (hadError) other.resetAndDestroy()
        else other.end()
      }
      forget(link)
    })
  }

  const openUpstream = (link: Link) => {
    const upstream = net.connect({ host: target.host, port: target.port })
    link.upstream = upstream
    relay(link, upstream, () => link.client)
  }

  const onConnection = (client: net.Socket) => {
    accepted++
    const link: Link = { client, upstream: null, state: blackholed ? 'held' : 'open' }
    links.add(link)
    relay(link, client, () => link.upstream)
    if (link.state === 'held') client.pause()
    else openUpstream(link)
  }

  const listen = (port: number) =>
    new Promise<net.Server>((resolve, reject) => {
      const s = net.createServer(onConnection)
      s.once('error', reject)
      s.listen(port, '127.0.0.1', () => {
        s.off('error', reject)
        resolve(s)
      })
    })
  const stopListening = async () => {
    const s = server
    server = null
    // close() calls back only once every connection ended; the links are ours to manage.
    if (s) s.close()
  }

  server = await listen(0)
  const port = (server.address() as net.AddressInfo).port

  const heal = (link: Link, resume: boolean) => {
    if (!resume) {
      // The server's side goes (its backend ends, locks are released); the client hears nothing.
      // Its bytes are read and dropped from now on, so its own close is seen and the link forgotten.
      link.state = 'dead'
      link.upstream?.destroy()
      link.client.resume()
      forget(link)
      return
    }
    if (link.client.destroyed) {
      link.state = 'dead'
      link.upstream?.destroy()
      forget(link)
      return
    }
    link.state = 'open'
    if (link.upstream === null) openUpstream(link)
    else if (link.upstream.destroyed) link.client.resetAndDestroy()
    else link.upstream.resume()
    link.client.resume()
  }

  return {
    host: '127.0.0.1',
    port,
    urlFor(url) {
      const u = new URL(url)
      u.hostname = '127.0.0.1'
      u.port = String(port)
      return u.toString()
    },
    cutAll() {
      const all = [...links]
      for (const link of all) {
        link.client.resetAndDestroy()
        link.upstream?.resetAndDestroy()
        links.delete(link)
      }
      cut += all.length
      return all.length
    },
    blackhole(on, options = {}) {
      if (on === blackholed) return
      blackholed = on
      for (const link of links) {
        if (on && link.state === 'open') {
          link.state = 'held'
          link.client.pause()
          link.upstream?.pause()
        } else if (!on && link.state === 'held') {
          heal(link, options.resume === true)
        }
      }
    },
    async refuse(on) {
      if (on) await stopListening()
      else if (!server) server = await listen(port)
    },
    counts() {
      let held = 0
      let dead = 0
      for (const link of links) {
        if (link.state === 'held') held++
        else if (link.state === 'dead') dead++
      }
      return { accepted, open: links.size, held, dead, cut }
    },
    async close() {
      await stopListening()
      for (const link of links) {
        link.client.resetAndDestroy()
        link.upstream?.resetAndDestroy()
      }
      links.clear()
    },
  }
}
