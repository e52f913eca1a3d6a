-- 0009_api_keys
-- Why:    the HTTP API authenticates callers with API keys: platform keys
--         (store_id null: may act for any store, must name it) and store keys
--         (one store only). A token is shown once at creation and kept only
--         as an HMAC-SHA256 under a per-installation secret, so the table
--         alone (a backup, a replica, a leaked dump) does not let anyone test
--         guesses offline, and 256-bit random tokens could not be guessed
--         anyway. The token names its row (`brk_<id>_<secret>`), so checking
--         one is a primary-key lookup and a constant-time compare.
--         * api_key_secret: the one HMAC key, made here from two random UUIDs
--           (244 random bits; core PostgreSQL has no other random bytes).
-- Locks:  creates new tables.
-- Revert: forward-only. Undo by a later migration, never by editing this file.

create table api_key_secret (
  id     boolean primary key default true check (id),
  secret bytea   not null check (length(secret) = 32)
);
insert into api_key_secret (secret)
values (decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));

create table api_keys (
  id          bigint      generated always as identity primary key,
  store_id    text        check (length(store_id) between 1 and 64),
  label       text        not null default '' check (length(label) <= 200),
  token_hash  bytea       not null check (length(token_hash) = 32),
  created_at  timestamptz not null default now(),
  revoked_at  timestamptz
);
