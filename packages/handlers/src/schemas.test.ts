import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { jobTypes, payloadSchemas } from './schemas.ts'

const SRC = path.dirname(fileURLToPath(import.meta.url))

/** Every module `file` imports, transitively: relative ones as paths, packages by name. */
function importGraph(file: string, seen = new Set<string>(), packages = new Set<string>()) {
  if (seen.has(file)) return { files: seen, packages }
  seen.add(file)
  const text = readFileSync(file, 'utf8')
  for (const match of text.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]/gm)) {
    const spec = match[1]!
    if (spec.startsWith('.')) importGraph(path.resolve(path.dirname(file), spec), seen, packages)
    else packages.add(spec)
  }
  return { files: seen, packages }
}

describe('the schemas-only entry (@backroom/handlers/schemas)', () => {
  it('reaches payload schema files and TypeBox only, never handler code or its clients', () => {
    const { files, packages } = importGraph(path.join(SRC, 'schemas.ts'))
    const reached = [...files].map((f) => path.relative(SRC, f)).filter((f) => f !== 'schemas.ts')
    expect(reached.length).toBeGreaterThan(0)
    for (const f of reached) expect(f, 'the API would load this with the schemas').toMatch(/-payload\.ts$/)
    expect([...packages].sort()).toEqual(['typebox'])
  })

  it('has an uploads entry (@backroom/handlers/uploads) that reaches the feed store only', () => {
    const { files } = importGraph(path.join(SRC, 'uploads.ts'))
    const reached = [...files].map((f) => path.relative(SRC, f)).sort()
    expect(reached).toEqual(
      ['import/feed/feed-uploads.ts', 'import/import-tables.ts', 'lib/shop-database.ts', 'lib/shop-migrations.ts', 'lib/shop-view.ts', 'uploads.ts'].sort(),
    )
  })

  it('has a schema for every handler the worker runs', async () => {
    const { createHandlers } = await import('./create-handlers.ts')
    const handlerTypes = createHandlers({ db: null as never, shop: { withTables: () => null } as never, env: {} }).map((h) => h.type)
    expect([...jobTypes].sort()).toEqual([...handlerTypes].sort())
    for (const h of handlerTypes) expect(payloadSchemas[h], h).toBeDefined()
  })
})
