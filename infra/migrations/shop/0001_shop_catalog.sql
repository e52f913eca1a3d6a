-- 0001_shop_catalog
-- Why:    the shop's domain tables, apart from the queue's: handlers read and
--         write these, queue-core never does. They live in their own schema
--         (`shop`) and their own ledger (`shop_migrations`), so a platform
--         that keeps its catalogue elsewhere can drop this set without
--         touching the queue.
--         * shop.stores: a store's profile as the handlers need it (name,
--           locales). The store id is the platform's, as on jobs.
--         * shop.products: the catalogue, one row per (store, SKU); imports
--           upsert by SKU, inventory syncs set stock, exports read it.
-- Locks:  creates a schema and new tables.
-- Revert: forward-only. Undo by a later migration, never by editing this file.

create schema if not exists shop;

create table shop.stores (
  store_id       text        primary key check (length(store_id) between 1 and 64),
  name           text        not null default '',
  default_locale text        not null default 'en',
  locales        text[]      not null default '{}',
  created_at     timestamptz not null default now(),
  updated_at     timestamptz not null default now()
);

create table shop.products (
  store_id    text          not null check (length(store_id) between 1 and 64),
  sku         text          not null check (length(sku) between 1 and 128),
  title       text          not null,
  description text          not null default '',
  price       numeric(14,2) not null check (price >= 0),
  currency    char(3)       not null,
  stock       integer       check (stock >= 0),
  attributes  jsonb         not null default '{}',
  created_at  timestamptz   not null default now(),
  updated_at  timestamptz   not null default now(),
  primary key (store_id, sku)
);
