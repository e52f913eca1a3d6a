const BOM = [0xef, 0xbb, 0xbf] as const

/**
 * The bytes without a leading UTF-8 byte-order mark (spreadsheets write
 * one), whatever the size of the first pieces. Nothing else is changed.
 */
export async function* withoutBom(bytes: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  /** The first bytes, held until they can be told apart from a BOM. */
  let head: Uint8Array = new Uint8Array(0)
  let decided = false
  for await (const chunk of bytes) {
    if (decided) {
      yield chunk
      continue
    }
    head = head.length === 0 ? chunk : Buffer.concat([head, chunk])
    const matched = BOM.every((b, i) => i >= head.length || head[i] === b)
    if (matched && head.length < BOM.length) continue
    decided = true
    const rest = matched ? head.subarray(BOM.length) : head
    if (rest.length > 0) yield rest
  }
  // A feed shorter than a BOM: whatever it holds is not one.
  if (!decided && head.length > 0 && !BOM.every((b, i) => head[i] === b)) yield head
}
