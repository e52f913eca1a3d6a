/** A seeded pseudo-random source: the same seed gives the same sequence, so a failing fuzz run can be replayed. */
export interface Rng {
  /** The seed this source started from (printed with every failure). */
  readonly seed: number
  /** A float in [0, 1). */
  next(): number
  /** An integer in [min, max], both inclusive. */
  int(min: number, max: number): number
  /** True with probability `p`. */
  chance(p: number): boolean
  /** One element of a non-empty list. */
  pick<T>(items: ReadonlyArray<T>): T
  /** `count` distinct elements of a list, in random order. */
  sample<T>(items: ReadonlyArray<T>, count: number): T[]
  /** A string of `length` characters drawn from `alphabet`. */
  string(length: number, alphabet?: string): string
}

const DEFAULT_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789-_.'

/**
 * A small, fast PRNG (mulberry32): not for secrets, only for reproducible
 * test inputs. Math.random cannot be seeded, and a failure that cannot be
 * replayed is nearly worthless in a fuzz test.
 *
 * @example
 * const rng = createRng(42)
 * rng.pick(['GET', 'POST']) // the same answer on every run with seed 42
 */
export function createRng(seed: number): Rng {
  let state = seed >>> 0
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
  const int = (min: number, max: number): number => min + Math.floor(next() * (max - min + 1))
  const pick = <T>(items: ReadonlyArray<T>): T => {
    if (items.length === 0) throw new Error('pick from an empty list')
    return items[int(0, items.length - 1)]!
  }
  return {
    seed,
    next,
    int,
    chance: (p) => next() < p,
    pick,
    sample<T>(items: ReadonlyArray<T>, count: number): T[] {
      const pool = [...items]
      const out: T[] = []
      while (out.length < count && pool.length > 0) out.push(pool.splice(int(0, pool.length - 1), 1)[0]!)
      return out
    },
    string(length, alphabet = DEFAULT_ALPHABET) {
      const chars = [...alphabet]
      let s = ''
      for (let i = 0; i < length; i++) s += pick(chars)
      return s
    },
  }
}
