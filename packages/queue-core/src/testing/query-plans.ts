import type { Kysely, RawBuilder } from 'kysely'
import type pg from 'pg'
import { preparedName } from '../db/prepared.ts'

/** One node of an `EXPLAIN (FORMAT JSON)` plan (the fields tests look at). */
export interface PlanNode {
  'Node Type': string
  'Relation Name'?: string
  'Index Name'?: string
  'Actual Rows'?: number
  'Actual Loops'?: number
  Plans?: PlanNode[]
}

/** A plan's nodes, flattened. */
export function planNodes(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(planNodes)]
}

/**
 * The plan PostgreSQL reuses for a marked (prepared) statement: the generic
 * one, forced here (by default it is chosen after five executions when it
 * costs no more than the custom plans; a statement may also force it).
 * `prepare` is the statement with arguments that make it do nothing, so
 * preparing it changes no row; `explain` gives the arguments to plan for.
 */
export async function preparedGenericPlan(
  pool: pg.Pool,
  db: Kysely<any>,
  statements: { prepare: RawBuilder<unknown>; explain: RawBuilder<unknown> },
  options: { analyze?: boolean } = {},
): Promise<PlanNode> {
  const client = await pool.connect()
  try {
    await client.query('set plan_cache_mode = force_generic_plan')
    const compiled = statements.prepare.compile(db)
    const name = preparedName(compiled.sql)
    if (name === null) throw new Error('statement is not marked as prepared')
    // Prepared exactly as a worker prepares it: a named protocol-level statement.
    await client.query({ name, text: compiled.sql, values: [...compiled.parameters] })
    const literal = (v: unknown): string =>
      v === null
        ? 'null'
        : Array.isArray(v)
          ? `array[${v.map((x) => client.escapeLiteral(String(x))).join(',')}]::text[]`
          : typeof v === 'number'
            ? String(v)
            : client.escapeLiteral(String(v))
    const values = statements.explain.compile(db).parameters.map(literal).join(', ')
    const { rows } = await client.query(`explain (${options.analyze ? 'analyze, ' : ''}format json) execute ${name}(${values})`)
    return rows[0]['QUERY PLAN'][0].Plan as PlanNode
  } finally {
    client.release()
  }
}
