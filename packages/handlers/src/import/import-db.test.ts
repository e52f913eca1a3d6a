import { describe, expect, it } from 'vitest'
import { useHandlerTestBed } from '../testing/run-jobs.ts'
import type { ProductRow } from './feed/parse-product-row.ts'
import { createImport, stageBatch } from './import-db.ts'
import type { ImportTables } from './import-tables.ts'

const bed = useHandlerTestBed()
const shop = () => bed.deps().shop.withTables<ImportTables>()

const row = (sku: string, title = `Title ${sku}`): ProductRow => ({ sku, title, description: '', price: '1.00', currency: 'EUR', stock: 1, attributes: '{}' })

describe('stageBatch', () => {
  it('writes a bad line\'s report with its text made storable, and turns a row the database refuses into a rejected line', async () => {
    const db = shop()
    await createImport(db, { importId: '9001', storeId: 'store-1', format: 'csv', source: 'upload:1' })
    const written = await stageBatch(db, {
      importId: '9001',
      rows: [
        { line: 2, row: row('a') },
        // Past the reader's checks by construction: PostgreSQL text cannot hold NUL.
        { line: 3, row: row('b', 'Nul \u0000 inside') },
        { line: 4, row: row('c') },
      ],
      errors: [{ line: 5, sku: 'x\u0000\uD800', code: 'invalid_character', reason: `sku: contains a NUL \u0000 ${'r'.repeat(600)}` }],
      through: 5,
    })
    expect(written).toEqual({ rows: 2, errors: 2 })
    const staged = await db.selectFrom('shop.product_import_rows').select(['line_no', 'sku']).where('import_id', '=', '9001').orderBy('line_no').execute()
    expect(staged).toEqual([
      { line_no: 2, sku: 'a' },
      { line_no: 4, sku: 'c' },
    ])
    const errors = await db.selectFrom('shop.product_import_errors').select(['line_no', 'sku', 'code', 'reason']).where('import_id', '=', '9001').orderBy('line_no').execute()
    expect(errors).toEqual([
      { line_no: 3, sku: 'b', code: 'unstorable_row', reason: 'row: the database cannot store this row (SQLSTATE 22021)' },
      { line_no: 5, sku: 'x\uFFFD\uFFFD', code: 'invalid_character', reason: expect.stringMatching(/^sku: contains a NUL \uFFFD r+$/) },
    ])
    expect(errors[1]!.reason).toHaveLength(500)
    const imp = await db.selectFrom('shop.product_imports').select('staged_through').where('import_id', '=', '9001').executeTakeFirstOrThrow()
    expect(imp.staged_through).toBe(5)
  })
})
