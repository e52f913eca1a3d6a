// The soak's plot: small multiples (RSS per process, dead tuples, pick-up
// latency, drain rate) over time, as plain SVG written by hand so the bench
// needs no plotting dependency.
import type { SoakSample } from './sampler.ts'

/** One line on a panel. */
interface Series {
  readonly label: string
  readonly color: string
  readonly points: ReadonlyArray<readonly [number, number]>
}

const PANEL_W = 460
const PANEL_H = 220
const PAD = { left: 56, right: 12, top: 28, bottom: 34 } as const
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e'] as const

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/** A "nice" upper bound for an axis (1, 2 or 5 × a power of ten). */
function niceMax(v: number): number {
  if (v <= 0) return 1
  const p = 10 ** Math.floor(Math.log10(v))
  return ([1, 2, 5, 10].find((m) => m * p >= v) ?? 10) * p
}

const num = (v: number) => (Math.abs(v) >= 10_000 ? `${Math.round(v / 1000)}k` : Number.isInteger(v) ? String(v) : v.toFixed(1))

/** One panel at (x, y): axes, four horizontal grid lines, a line per series, a legend. */
function panel(x: number, y: number, title: string, unit: string, series: ReadonlyArray<Series>, maxMinute: number): string {
  const w = PANEL_W - PAD.left - PAD.right
  const h = PANEL_H - PAD.top - PAD.bottom
  const top = niceMax(Math.max(0, ...series.flatMap((s) => s.points.map(([, v]) => v))))
  const sx = (m: number) => x + PAD.left + (maxMinute > 0 ? (m / maxMinute) * w : 0)
  const sy = (v: number) => y + PAD.top + h - (v / top) * h
  const parts: string[] = [`<text x="${x + PAD.left}" y="${y + 16}" font-weight="bold">${esc(title)} (${esc(unit)})</text>`]
  for (let i = 0; i <= 4; i++) {
    const v = (top * i) / 4
    parts.push(
      `<line x1="${x + PAD.left}" x2="${x + PAD.left + w}" y1="${sy(v)}" y2="${sy(v)}" stroke="#ddd"/>`,
      `<text x="${x + PAD.left - 4}" y="${sy(v) + 4}" text-anchor="end">${num(v)}</text>`,
    )
  }
  const ticks = 6
  for (let i = 0; i <= ticks; i++) {
    const m = (maxMinute * i) / ticks
    parts.push(`<text x="${sx(m)}" y="${y + PAD.top + h + 14}" text-anchor="middle">${num(Math.round(m * 10) / 10)}</text>`)
  }
  parts.push(`<text x="${x + PAD.left + w / 2}" y="${y + PANEL_H - 4}" text-anchor="middle">minutes</text>`)
  parts.push(`<rect x="${x + PAD.left}" y="${y + PAD.top}" width="${w}" height="${h}" fill="none" stroke="#888"/>`)
  series.forEach((s, i) => {
    if (s.points.length > 0) {
      const d = s.points.map(([m, v]) => `${sx(m).toFixed(1)},${sy(v).toFixed(1)}`).join(' ')
      parts.push(`<polyline points="${d}" fill="none" stroke="${s.color}" stroke-width="1.5"/>`)
    }
    const lx = x + PAD.left + 8 + i * 100
    parts.push(
      `<line x1="${lx}" x2="${lx + 14}" y1="${y + PAD.top + 10}" y2="${y + PAD.top + 10}" stroke="${s.color}" stroke-width="2"/>`,
      `<text x="${lx + 18}" y="${y + PAD.top + 14}">${esc(s.label)}</text>`,
    )
  })
  return parts.join('\n')
}

/** The four panels for `samples` in a 2 × 2 grid, with `caption` above them. */
export function soakSvg(samples: ReadonlyArray<SoakSample>, caption: string): string {
  const maxMinute = samples.at(-1)?.minute ?? 1
  const pts = (f: (s: SoakSample) => number | null): Array<readonly [number, number]> =>
    samples.flatMap((s) => {
      const v = f(s)
      return v === null ? [] : [[s.minute, v] as const]
    })
  const names = Object.keys(samples[0]?.rssMb ?? {})
  const perMinute = (s: SoakSample, n: number) => {
    const prev = samples[samples.indexOf(s) - 1]
    const windowMin = s.minute - (prev?.minute ?? 0)
    return windowMin > 0 ? n / windowMin : n
  }
  const panels = [
    panel(0, 0, 'RSS per process', 'MB', names.map((n, i) => ({ label: n, color: COLORS[i % COLORS.length] as string, points: pts((s) => s.rssMb[n] ?? null) })), maxMinute),
    panel(PANEL_W, 0, 'jobs table tuples', 'rows', [
      { label: 'dead', color: COLORS[1], points: pts((s) => s.deadTuples) },
      { label: 'live', color: COLORS[0], points: pts((s) => s.liveTuples) },
    ], maxMinute),
    panel(0, PANEL_H, 'pick-up latency', 'ms', [
      { label: 'p99', color: COLORS[1], points: pts((s) => s.pickup.p99Ms) },
      { label: 'p50', color: COLORS[0], points: pts((s) => s.pickup.p50Ms) },
    ], maxMinute),
    panel(PANEL_W, PANEL_H, 'throughput', 'jobs/min', [
      { label: 'finished', color: COLORS[2], points: pts((s) => perMinute(s, s.completed + s.failed)) },
      { label: 'enqueued', color: COLORS[0], points: pts((s) => perMinute(s, s.enqueued)) },
      { label: 'pending', color: COLORS[3], points: pts((s) => s.pending) },
    ], maxMinute),
  ]
  const width = PANEL_W * 2
  const height = PANEL_H * 2 + 24
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="8" y="16" font-size="12">${esc(caption)}</text>`,
    `<g transform="translate(0,24)">`,
    ...panels,
    `</g>`,
    `</svg>`,
    '',
  ].join('\n')
}
