-- 0002_translations
-- Why:    `translation.ui` translates a store's UI strings through DeepL.
--         * shop.translation_memory: one row per (source language, target
--           language, sha-256 of the source text). A row is either reserved
--           (translated_text null; reserved_by = the job sending it, until
--           reserved_until) or translated. Jobs reserve a string before
--           sending it (insert ... on conflict do nothing/update), so one
--           text is paid for once: within a job, across jobs and between
--           jobs running at the same time. An expired reservation (its
--           reserver crashed) may be taken over. Shared by every store: the
--           row only ever answers a store that sends the very same text.
--         * shop.ui_translations: the result per store, locale and key,
--           upserted; `source_hash` says which source text it translates.
-- Locks:  creates new tables only.
-- Revert: forward-only. Undo by a later migration, never by editing this file.

create table shop.translation_memory (
  source_lang     text        not null check (length(source_lang) between 2 and 16),
  target_lang     text        not null check (length(target_lang) between 2 and 16),
  source_hash     text        not null check (source_hash ~ '^[0-9a-f]{64}$'),
  source_text     text        not null,
  translated_text text,
  reserved_by     text,
  reserved_until  timestamptz,
  created_at      timestamptz not null default now(),
  translated_at   timestamptz,
  primary key (source_lang, target_lang, source_hash),
  constraint translation_memory_state_check
    check (translated_text is not null or (reserved_by is not null and reserved_until is not null))
);

create table shop.ui_translations (
  store_id    text        not null check (length(store_id) between 1 and 64),
  locale      text        not null check (length(locale) between 2 and 16),
  key         text        not null check (length(key) between 1 and 200),
  text        text        not null,
  source_hash text        not null check (source_hash ~ '^[0-9a-f]{64}$'),
  updated_at  timestamptz not null default now(),
  primary key (store_id, locale, key)
);
