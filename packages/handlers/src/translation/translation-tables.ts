import { sql, type Kysely } from 'kysely'
import type { ShopDatabase } from '../lib/shop-database.ts'
import type { SourceText } from './deepl-client.ts'

/** `shop.translation_memory` (infra/migrations/shop/0002): one row per (source, target, text hash). */
export interface TranslationMemoryTable {
  readonly source_lang: string
  readonly target_lang: string
  readonly source_hash: string
  readonly source_text: string
  /** Null while the row is only a reservation. */
  translated_text: string | null
  /** The job id sending the text, while reserved. */
  reserved_by: string | null
  reserved_until: Date | null
  created_at: Date
  translated_at: Date | null
}

/** `shop.ui_translations` (infra/migrations/shop/0002): a store's translated UI, one row per (locale, key). */
export interface UiTranslationTable {
  readonly store_id: string
  readonly locale: string
  readonly key: string
  text: string
  source_hash: string
  updated_at: Date
}

/**
 * The tables of the translation folder, for `deps.shop.withTables<TranslationTables>()`
 * (a type alias: withTables wants an index-signature-compatible record).
 */
export type TranslationTables = {
  'shop.translation_memory': TranslationMemoryTable
  'shop.ui_translations': UiTranslationTable
}

/** The shop view widened with the translation tables. */
export type TranslationDb = Kysely<ShopDatabase & TranslationTables>

/** One language pair of the memory. */
export interface LangPair {
  readonly sourceLang: string
  readonly targetLang: string
}

/** Rows per statement: keeps parameters and replies bounded (texts run to 5,000 characters). */
const CHUNK = 500

/**
 * The memory's translations of `hashes` for one language pair, by hash.
 * Reserved but untranslated rows are absent.
 */
export async function lookupTranslations(db: TranslationDb, pair: LangPair, hashes: ReadonlyArray<string>): Promise<Map<string, string>> {
  const found = new Map<string, string>()
  for (let i = 0; i < hashes.length; i += CHUNK) {
    const rows = await db
      .selectFrom('shop.translation_memory')
      .select(['source_hash', 'translated_text'])
      .where('source_lang', '=', pair.sourceLang)
      .where('target_lang', '=', pair.targetLang)
      .where('source_hash', '=', sql<string>`any(${[...hashes.slice(i, i + CHUNK)]}::text[])`)
      .where('translated_text', 'is not', null)
      .execute()
    for (const r of rows) found.set(r.source_hash, r.translated_text!)
  }
  return found
}

/**
 * Reserves texts for sending by `reserver` (a job id) for `ttlMs`, and
 * returns the hashes it now holds: rows it inserted, rows whose reservation
 * had expired (their reserver crashed), and rows it already held (an
 * earlier attempt of the same job). Texts translated meanwhile, or held by
 * another live job, are not returned: the caller must not send them.
 *
 * Expects the primary key (source_lang, target_lang, source_hash). Rows go
 * in hash order so two jobs reserving overlapping sets wait on each other
 * in the same order and cannot deadlock.
 */
export async function reserveTexts(
  db: TranslationDb,
  args: LangPair & { readonly texts: ReadonlyArray<SourceText>; readonly reserver: string; readonly ttlMs: number },
): Promise<Set<string>> {
  if (args.texts.length === 0) return new Set()
  const hashes = args.texts.map((t) => t.hash)
  const texts = args.texts.map((t) => t.text)
  const result = await sql<{ source_hash: string }>`
    insert into shop.translation_memory as m (source_lang, target_lang, source_hash, source_text, reserved_by, reserved_until)
    select ${args.sourceLang}, ${args.targetLang}, t.hash, t.text, ${args.reserver}, now() + ${args.ttlMs} * interval '1 millisecond'
    from unnest(${hashes}::text[], ${texts}::text[]) as t(hash, text)
    order by t.hash
    on conflict (source_lang, target_lang, source_hash) do update
      set reserved_by = excluded.reserved_by, reserved_until = excluded.reserved_until
      where m.translated_text is null
        and (m.reserved_until <= now() or m.reserved_by = excluded.reserved_by)
    returning m.source_hash
  `.execute(db)
  return new Set(result.rows.map((r) => r.source_hash))
}

/**
 * Records translations and clears their reservations. A row translated
 * meanwhile by someone else (our reservation had expired) keeps its text:
 * both are translations of the same string, and the first one stays stable.
 */
export async function saveTranslations(
  db: TranslationDb,
  args: LangPair & { readonly results: ReadonlyArray<{ readonly hash: string; readonly translated: string }> },
): Promise<number> {
  if (args.results.length === 0) return 0
  const result = await sql`
    update shop.translation_memory m
    set translated_text = t.translated, reserved_by = null, reserved_until = null, translated_at = now()
    from unnest(${args.results.map((r) => r.hash)}::text[], ${args.results.map((r) => r.translated)}::text[]) as t(hash, translated)
    where m.source_lang = ${args.sourceLang} and m.target_lang = ${args.targetLang}
      and m.source_hash = t.hash and m.translated_text is null
  `.execute(db)
  return Number(result.numAffectedRows ?? 0)
}

/**
 * Ends `reserver`'s reservations of `hashes` now (the send failed), so
 * other jobs need not wait for them to expire. Rows stay as expired
 * reservations; whoever reserves next takes them over.
 */
export async function releaseReservations(
  db: TranslationDb,
  args: LangPair & { readonly hashes: ReadonlyArray<string>; readonly reserver: string },
): Promise<void> {
  if (args.hashes.length === 0) return
  await db
    .updateTable('shop.translation_memory')
    .set({ reserved_until: sql<Date>`now()` })
    .where('source_lang', '=', args.sourceLang)
    .where('target_lang', '=', args.targetLang)
    .where('source_hash', '=', sql<string>`any(${[...args.hashes]}::text[])`)
    .where('reserved_by', '=', args.reserver)
    .where('translated_text', 'is', null)
    .execute()
}

/** One translated UI string of a store. */
export interface UiTranslation {
  readonly key: string
  readonly text: string
  readonly sourceHash: string
}

/**
 * Upserts a store's translations for one locale; a row whose text and
 * source are unchanged is left alone (no churn of updated_at on a rerun).
 * Returns the rows inserted or changed.
 */
export async function upsertUiTranslations(
  db: TranslationDb,
  args: { readonly storeId: string; readonly locale: string; readonly rows: ReadonlyArray<UiTranslation> },
): Promise<number> {
  let changed = 0
  for (let i = 0; i < args.rows.length; i += CHUNK) {
    const rows = args.rows.slice(i, i + CHUNK)
    const result = await sql`
      insert into shop.ui_translations as u (store_id, locale, key, text, source_hash)
      select ${args.storeId}, ${args.locale}, r.key, r.text, r.source_hash
      from unnest(${rows.map((r) => r.key)}::text[], ${rows.map((r) => r.text)}::text[], ${rows.map((r) => r.sourceHash)}::text[])
        as r(key, text, source_hash)
      on conflict (store_id, locale, key) do update
        set text = excluded.text, source_hash = excluded.source_hash, updated_at = now()
        where (u.text, u.source_hash) is distinct from (excluded.text, excluded.source_hash)
    `.execute(db)
    changed += Number(result.numAffectedRows ?? 0)
  }
  return changed
}
