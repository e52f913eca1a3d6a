-- 0008_product_import_error_codes
-- Why:    each rejected feed line of an import gets a stable code next to its
--         reason (row_too_large, field_too_large, invalid_encoding,
--         invalid_character, malformed_row, invalid_field, unstorable_row),
--         so a store's tools can sort its error report without parsing
--         sentences. Lines rejected before this migration read 'invalid_row'.
-- Locks:  ADD COLUMN with a constant default is a catalogue-only change (no
--         table rewrite) but takes ACCESS EXCLUSIVE on
--         shop.product_import_errors for an instant; lock_timeout makes it fail
--         fast rather than queue the imports' writers behind a long transaction.
--         Re-run the migration if it times out.
-- Index:  none added; the report reads by (import_id, line_no), the primary key.
-- Revert: forward-only. Undo by a later migration, never by editing this file.

set local lock_timeout = '5s';

alter table shop.product_import_errors
  add column code text not null default 'invalid_row' check (code ~ '^[a-z_]{1,40}$');
