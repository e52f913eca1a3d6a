import { createSocket } from 'node:dgram'
import type { AddressInfo } from 'node:net'
import { parseIpAddress } from '../lib/ip-address.ts'

/** Record types the fake server answers; other types get an empty answer. */
export type DnsRecordType = 'A' | 'AAAA'

/**
 * The addresses to answer for a name and type: an empty list is "no
 * records of this type" (NOERROR), null is "no such name" (NXDOMAIN).
 * Called once per query, so answers may change from one query to the next.
 */
export type DnsAnswer = (name: string, type: DnsRecordType) => ReadonlyArray<string> | null

/** A DNS server on 127.0.0.1 standing in for the world's DNS in tests. */
export interface FakeDnsServer {
  /** `127.0.0.1:<port>`, as dnsServerResolver and dns.Resolver#setServers take it. */
  readonly address: string
  /** Every question received, in order (lowercase names). */
  readonly queries: Array<{ readonly name: string; readonly type: string }>
  close(): Promise<void>
}

const TYPE_CODES: Readonly<Record<number, string>> = { 1: 'A', 28: 'AAAA' }
const QUERY_TYPES: Readonly<Record<DnsRecordType, number>> = { A: 1, AAAA: 28 }

/**
 * Starts a UDP DNS server on an ephemeral port of 127.0.0.1 answering A and
 * AAAA questions from `answer`, with TTL 0 so no resolver caches an answer.
 *
 * @example
 * const dns = await startFakeDnsServer((name, type) => (name === 'feeds.test' && type === 'A' ? ['127.0.0.1'] : []))
 * const resolveHost = dnsServerResolver([dns.address])
 */
export async function startFakeDnsServer(answer: DnsAnswer): Promise<FakeDnsServer> {
  const socket = createSocket('udp4')
  const queries: Array<{ name: string; type: string }> = []
  socket.on('message', (query, peer) => {
    const question = readQuestion(query)
    if (!question) return
    const type = TYPE_CODES[question.type]
    queries.push({ name: question.name, type: type ?? String(question.type) })
    let message: Buffer
    try {
      message = reply(query, question.end, type as DnsRecordType | undefined, type ? answer(question.name, type as DnsRecordType) : [])
    } catch {
      // A test's answer function failed: SERVFAIL, so the test sees a DNS failure rather than a crash.
      message = reply(query, question.end, undefined, [], 2)
    }
    socket.send(message, peer.port, peer.address)
  })
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))
  const { port } = socket.address() as AddressInfo
  return {
    address: `127.0.0.1:${port}`,
    queries,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  }
}

/** The first question: its name, type and where it ends. Null for a message too short to hold one. */
function readQuestion(msg: Buffer): { readonly name: string; readonly type: number; readonly end: number } | null {
  if (msg.length < 12 || msg.readUInt16BE(4) < 1) return null
  const labels: string[] = []
  let at = 12
  while (at < msg.length && msg[at] !== 0) {
    const len = msg[at]!
    labels.push(msg.subarray(at + 1, at + 1 + len).toString('ascii'))
    at += 1 + len
  }
  // The name's closing zero, then QTYPE and QCLASS.
  if (at + 5 > msg.length) return null
  return { name: labels.join('.').toLowerCase(), type: msg.readUInt16BE(at + 1), end: at + 5 }
}

function reply(query: Buffer, questionEnd: number, type: DnsRecordType | undefined, found: ReadonlyArray<string> | null, rcode = 0): Buffer {
  const answers = (found ?? []).map((text) => {
    const ip = parseIpAddress(text)
    if (!ip || (type === 'A') !== (ip.family === 4)) throw new Error(`fake DNS: ${text} is not an ${type} address`)
    const record = Buffer.alloc(12)
    record.writeUInt16BE(0xc00c, 0) // the name: a pointer to the question's
    record.writeUInt16BE(QUERY_TYPES[type!], 2)
    record.writeUInt16BE(1, 4) // class IN
    record.writeUInt32BE(0, 6) // TTL 0: never cached
    record.writeUInt16BE(ip.bytes.length, 10)
    return Buffer.concat([record, Buffer.from(ip.bytes)])
  })
  const header = Buffer.alloc(12)
  query.copy(header, 0, 0, 2) // id
  const rd = query.readUInt16BE(2) & 0x0100
  // QR, AA, the query's RD, RA; NXDOMAIN (3) when the name is unknown.
  header.writeUInt16BE(0x8000 | 0x0400 | rd | 0x0080 | (found === null ? 3 : rcode), 2)
  header.writeUInt16BE(1, 4)
  header.writeUInt16BE(answers.length, 6)
  return Buffer.concat([header, query.subarray(12, questionEnd), ...answers])
}
