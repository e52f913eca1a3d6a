/** Buckets one process keeps when the caller does not say: about 100 bytes each, so some 10 MB at most. */
export const DEFAULT_MAX_BUCKETS = 100_000

/**
 * Buckets examined at the head of the list on each take: a full one is
 * forgotten, a spent one moves to the tail. Above one, the sweep outpaces
 * the at most one bucket a take adds, so refilled buckets drain away while
 * any store is enqueueing.
 */
const SWEEP_PER_TAKE = 4

/** Options of {@link createTokenBuckets}. */
export interface TokenBucketsOptions {
  /** Tokens added per second. */
  readonly rate: number
  /** Bucket size (a new key starts full). */
  readonly burst: number
  /** Most keys held at once; past it the key at the head of the list (long untouched) is forgotten. */
  readonly maxBuckets?: number
  /** Injected clock (ms). */
  readonly now?: () => number
}

/** Token buckets by key, in this process. */
export interface TokenBuckets {
  /**
   * Spends `cost` tokens of `key`'s bucket and returns 0, or returns the ms
   * until the bucket holds min(cost, burst) tokens and spends nothing. A cost
   * above the burst is let through once the bucket is full and leaves it in
   * debt, which later takes wait out.
   */
  take(key: string, cost: number): number
  /** Keys currently held (a full bucket is never needed: it is what a new key starts as). */
  size(): number
}

/** A bucket in the list: a take moves it to the tail, so the head holds the keys untouched longest. */
interface Bucket {
  readonly key: string
  tokens: number
  ms: number
  prev: Bucket | null
  next: Bucket | null
}

/**
 * Token buckets in a map plus a doubly linked recency list, so a take costs
 * O(1) whatever the number of keys: the map finds the bucket, the list moves
 * it to the tail, and a bounded sweep at the head forgets buckets that have
 * refilled (a full bucket says nothing a new one would not) and moves spent
 * ones to the tail. Memory is bounded twice: by the keys spent within a
 * refill time (the sweep), and by `maxBuckets` (the head goes first). A
 * forgotten bucket still in debt lets its key start over full; with the
 * default cap that takes 100,000 other keys taken since.
 *
 * @example
 * const buckets = createTokenBuckets({ rate: 100, burst: 200 })
 * const waitMs = buckets.take('store-42', 1)
 */
export function createTokenBuckets(options: TokenBucketsOptions): TokenBuckets {
  const { rate, burst } = options
  const maxBuckets = options.maxBuckets ?? DEFAULT_MAX_BUCKETS
  if (!(rate > 0) || !(burst >= 1)) throw new RangeError('rate must be > 0 and burst >= 1')
  if (!Number.isInteger(maxBuckets) || maxBuckets < 1) throw new RangeError('maxBuckets must be an integer >= 1')
  const now = options.now ?? Date.now
  const byKey = new Map<string, Bucket>()
  let head: Bucket | null = null
  let tail: Bucket | null = null

  const unlink = (b: Bucket) => {
    if (b.prev) b.prev.next = b.next
    else head = b.next
    if (b.next) b.next.prev = b.prev
    else tail = b.prev
    b.prev = null
    b.next = null
  }
  const append = (b: Bucket) => {
    b.prev = tail
    if (tail) tail.next = b
    else head = b
    tail = b
  }
  const forget = (b: Bucket) => {
    unlink(b)
    byKey.delete(b.key)
  }
  const refilled = (b: Bucket, t: number) => Math.min(burst, b.tokens + (Math.max(0, t - b.ms) * rate) / 1000)

  /** Forgets refilled buckets at the head; spent ones go to the tail to be looked at again later. */
  const sweep = (t: number, keep: Bucket) => {
    for (let i = 0; i < SWEEP_PER_TAKE && head !== null && head !== keep; i++) {
      const b: Bucket = head
      if (refilled(b, t) >= burst) {
        forget(b)
      } else {
        unlink(b)
        append(b)
      }
    }
    while (byKey.size > maxBuckets && head !== null && head !== keep) forget(head)
  }

  return {
    take(key, cost) {
      const t = now()
      let b = byKey.get(key)
      if (b) {
        unlink(b)
      } else {
        b = { key, tokens: burst, ms: t, prev: null, next: null }
        byKey.set(key, b)
      }
      append(b)
      const tokens = refilled(b, t)
      b.ms = t
      const need = Math.min(cost, burst)
      let waitMs = 0
      if (tokens < need) {
        b.tokens = tokens
        waitMs = Math.ceil(((need - tokens) * 1000) / rate)
      } else {
        b.tokens = tokens - cost
      }
      sweep(t, b)
      return waitMs
    },
    size: () => byKey.size,
  }
}
