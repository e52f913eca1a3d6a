-- 0014_api_key_audit
-- Why:    who created or revoked an API key, and when and how much each key
--         is used, must be answerable afterwards, without the token or its
--         hash ever being written anywhere but api_keys.token_hash.
--         One table holds both kinds of row, so a key's history reads (and
--         pages, and expires) as one list:
--         * 'created' / 'revoked': one row per change, inserted by the same
--           statement that changes api_keys, with the actor: a key id, `admin`
--           or `admin-previous` (BACKROOM_ADMIN_KEY and its predecessor during
--           a rotation), `cli` (pnpm backroom keys), or `unknown` (code that
--           called queue-core without naming one).
--         * 'used': one row per key and hour (`at` is the hour's start), with
--           the number of authenticated requests and the first and last of
--           them. API processes count in memory and add their counts every
--           few seconds with one upsert, so a request costs no statement.
--           `key_id` is also `admin` / `admin-previous` for the admin keys,
--           which have no api_keys row: hence text, and no foreign key.
--         `store_id` is the key's store (null: a platform key).
-- Locks:  creates a new table.
-- Index:  (key_id, at, id) serves a key's history newest first (keyset pages);
--         the partial unique index is the upsert's conflict target; (at)
--         serves the retention sweep.
-- Revert: forward-only. Undo by a later migration, never by editing this file.

create table api_key_audit (
  id            bigint      generated always as identity primary key,
  key_id        text        not null check (key_id ~ '^([1-9][0-9]{0,18}|admin|admin-previous)$'),
  store_id      text        check (length(store_id) between 1 and 64),
  event         text        not null check (event in ('created', 'revoked', 'used')),
  actor         text        check (actor ~ '^([1-9][0-9]{0,18}|admin|admin-previous|cli|unknown)$'),
  at            timestamptz not null,
  uses          bigint      check (uses > 0),
  first_used_at timestamptz,
  last_used_at  timestamptz,
  -- A change has an actor and no counts; a use row has counts and no actor.
  check (
    case when event = 'used'
      then actor is null and uses is not null and first_used_at is not null and last_used_at is not null
      else actor is not null and uses is null and first_used_at is null and last_used_at is null
    end
  )
);

create index api_key_audit_key on api_key_audit (key_id, at, id);
create unique index api_key_audit_use_hour on api_key_audit (key_id, at) where event = 'used';
create index api_key_audit_at on api_key_audit (at);
