/** What store B owns that no other store's caller may ever be shown. */
export interface StoreSecrets {
  readonly storeId: string
  /** Job ids of the store (any state). */
  readonly jobIds: ReadonlySet<string>
  /** Its upload ids. */
  readonly uploadIds: ReadonlySet<string>
  /** Its API key ids and tokens. */
  readonly keyIds: ReadonlySet<string>
  /** Distinctive text its jobs carry (user ids, dedupe keys) and its tokens: found anywhere in a body, B was read. */
  readonly texts: ReadonlyArray<string>
}

/** The parts of a request that may be echoed back (an error may name the id or value the caller sent). */
export interface SentRequest {
  readonly url: string
  readonly body?: string
}

/**
 * Why a response to another store's (or no) key shows something of store
 * `secrets`, or null: a field `storeId` naming it, a job id, upload id or
 * key id of it, or any of its distinctive texts, unless the caller sent
 * that very value itself (a 404 naming the id asked for reveals nothing).
 * `ownStoreId`: the only store a store key's successful answers may name.
 *
 * @example
 * crossStoreProblem({ url: '/v1/jobs' }, res.body, secretsOfB, 'store-a') // 'job 17 of store B under /jobs/0/id'
 */
export function crossStoreProblem(request: SentRequest, body: string, secrets: StoreSecrets, ownStoreId: string | null): string | null {
  const sent = `${safeDecode(request.url)}\n${request.body ?? ''}`
  for (const text of secrets.texts) {
    if (body.includes(text) && !sent.includes(text)) return `body holds store B's ${JSON.stringify(text.slice(0, 24))}`
  }
  if (body.includes(secrets.storeId) && !sent.includes(secrets.storeId)) return "body names store B's id"
  let parsed: unknown
  try {
    parsed = JSON.parse(body)
  } catch {
    return null
  }
  return walk(parsed, '', (key, value, parent, where) => {
    if (typeof value !== 'string') return null
    if (key === 'storeId' && value === secrets.storeId && !sent.includes(value)) return `store B named under ${where}`
    if (key === 'storeId' && ownStoreId !== null && value !== ownStoreId && !sent.includes(value)) return `store ${JSON.stringify(value)} named under ${where}`
    // Job, upload and key ids come from different sequences and may be equal numbers: each is checked where it means its own kind.
    const isJob = key === 'jobId' || (key === 'id' && 'state' in parent && 'type' in parent)
    if (isJob && secrets.jobIds.has(value) && !sentId(sent, value)) return `job ${value} of store B under ${where}`
    if (key === 'uploadId' && secrets.uploadIds.has(value) && !sentId(sent, value)) return `upload ${value} of store B under ${where}`
    const isKey = (key === 'id' && 'key' in parent) || key === 'keyId'
    if (isKey && secrets.keyIds.has(value) && !sentId(sent, value)) return `key ${value} of store B under ${where}`
    return null
  })
}

/** Whether the request carried this id as a whole number (not as part of a longer one). */
function sentId(sent: string, id: string): boolean {
  return new RegExp(`(^|[^0-9])${id}([^0-9]|$)`).test(sent)
}

function safeDecode(url: string): string {
  try {
    return decodeURIComponent(url)
  } catch {
    return url
  }
}

type Visit = (key: string, value: unknown, parent: object, where: string) => string | null

function walk(value: unknown, where: string, visit: Visit): string | null {
  if (value === null || typeof value !== 'object') return null
  for (const [key, v] of Object.entries(value)) {
    const here = `${where}/${key}`
    const problem = visit(Array.isArray(value) ? '' : key, v, value, here) ?? walk(v, here, visit)
    if (problem !== null) return problem
  }
  return null
}
