import type pg from 'pg'

/**
 * Statements whose text begins with `/* prepared:NAME *\/` run as named
 * (prepared) statements on connections from our own pools: PostgreSQL parses
 * and plans them once per connection instead of on every call. Only fixed
 * texts carry the marker (values are always parameters), so a connection
 * holds one prepared statement per marked query and no more.
 *
 * Measured on a single enqueue: planning the insert's CTEs took 0.17-0.25 ms
 * of a 0.5 ms statement; marking it took a single enqueue from 0.91 to
 * 0.52 ms here.
 *
 * Mark a statement only after checking its generic plan (PostgreSQL switches
 * to it after five executions when it looks no dearer): the fenced completion
 * and heartbeat statements got a generic plan that walks every running row
 * for each fence (the planner assumes a 10-row unnest and an almost empty
 * running set), and a 100,000-job drain fell from 33,000 to 7,800 jobs/s.
 * The claims' generic plans are checked by claim.test.ts and
 * claim-limited.test.ts.
 */
export const preparedMarker = (name: string): string => `/* prepared:${name} */`

const MARKER = /^\/\* prepared:([a-z0-9_]+) \*\//

/** The statement name a marked text asks for, or null. */
export function preparedName(text: string): string | null {
  return MARKER.exec(text)?.[1] ?? null
}

/**
 * Wraps a pool so that marked statements from Kysely (which always sends
 * `query(text, values)`) are sent as named statements. Everything else passes
 * through untouched, including the client's own `release()`.
 */
export function withPreparedStatements(pool: pg.Pool): pg.Pool {
  return new Proxy(pool, {
    get(target, prop, receiver) {
      if (prop !== 'connect') return Reflect.get(target, prop, receiver)
      return async () => {
        const client = await target.connect()
        return new Proxy(client, {
          get(c, p, r) {
            if (p !== 'query') return Reflect.get(c, p, r)
            return (text: unknown, values?: unknown) => {
              const name = typeof text === 'string' ? preparedName(text) : null
              if (name === null) return (c.query as (...args: unknown[]) => unknown)(text, values)
              return c.query({ name, text: text as string, values: values as unknown[] })
            }
          },
        })
      }
    },
  })
}
