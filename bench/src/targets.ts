// Backroom's goals from its benchmark issue, each checked against the run's
// own numbers, and what limits the ones it misses (from profiling on the
// 2-core machine the goals were set for).
import type { Target } from './report.ts'
import { fmt, num, type Row } from './harness.ts'

/** A goal: the measured value must be at least or at most `threshold`. */
export interface Goal {
  readonly name: string
  readonly op: '≥' | '≤'
  readonly threshold: number
  /** Unit after the numbers, e.g. `×` or ` ms`. */
  readonly unit: string
  /** Shown when the goal is missed: what limits it, as measured. */
  readonly why?: string
}

/** Checks `value` against `goal`; `detail` says where the value comes from. NaN (a peer not run) gives no target. */
export function check(goal: Goal, value: number, detail: string): Target[] {
  if (!Number.isFinite(value)) return []
  const met = goal.op === '≥' ? value >= goal.threshold : value <= goal.threshold
  return [
    {
      name: goal.name,
      goal: `${goal.op} ${goal.threshold}${goal.unit}`,
      measured: `${fmt(value)}${goal.unit}${detail ? ` (${detail})` : ''}`,
      met,
      ...(met || !goal.why ? {} : { why: goal.why }),
    },
  ]
}

/** Backroom's cell over a peer's in one column of one table. */
export function ratio(rows: ReadonlyArray<Row>, column: string, peer: string, base = 'backroom'): number {
  return num(rows, base, column) / num(rows, peer, column)
}

/**
 * The worst of several ratios (the goal must hold in every configuration),
 * with each one listed: `0.61× worst; c=10 p=1 0.65×, ...`.
 */
export function worstRatio(
  rows: ReadonlyArray<Row>,
  columns: ReadonlyArray<string>,
  peer: string,
): { value: number; detail: string } {
  const each = columns.map((c) => [c, ratio(rows, c, peer)] as const).filter(([, r]) => Number.isFinite(r))
  if (each.length === 0) return { value: Number.NaN, detail: '' }
  const value = Math.min(...each.map(([, r]) => r))
  return { value, detail: `worst of ${each.map(([c, r]) => `${c.replace(/ \(.*\)$/, '')}: ${r.toFixed(2)}×`).join(', ')}` }
}
