-- 0003_product_imports
-- Why:    product feed imports (handler import.products, packages/handlers/src/import).
--         * shop.feed_uploads + shop.feed_upload_parts: a feed uploaded through
--           the API, kept as parts of at most 1 MiB so neither the upload nor
--           the import ever holds the whole file in memory. `completed_at` is
--           set once the last part is written; an import refuses an upload
--           without it (an interrupted upload is not a short feed).
--         * shop.product_imports: one row per import, keyed by the parent job's
--           id. `staged_through` is the last feed line staged: a parent run
--           again after a crash re-reads the feed and skips up to it.
--         * shop.product_import_rows: the feed's valid rows, staged once per
--           line (import_id, line_no); chunk jobs upsert them into
--           shop.products by line range. Deleted when the import ends.
--         * shop.product_import_errors: every rejected line with its reason:
--           the import's full partial-failure report (the job result keeps a sample).
--         * shop.product_import_chunks: one row per chunk job: its line range,
--           its valid rows, and its state, set done in the same transaction
--           as its upsert.
-- Locks:  creates new tables only.
-- Index:  product_import_rows_sku_idx: a chunk skips a row when a later line
--         of the same feed has the same SKU (the later line wins), one index
--         probe per row.
-- Revert: forward-only. Undo by a later migration, never by editing this file.

create table shop.feed_uploads (
  upload_id    bigint      generated always as identity primary key,
  store_id     text        not null check (length(store_id) between 1 and 64),
  format       text        not null check (format in ('csv', 'jsonl')),
  parts        integer     not null default 0,
  bytes        bigint      not null default 0,
  created_at   timestamptz not null default now(),
  completed_at timestamptz
);

create index feed_uploads_store_idx on shop.feed_uploads (store_id, created_at);

create table shop.feed_upload_parts (
  upload_id bigint  not null references shop.feed_uploads (upload_id) on delete cascade,
  part_no   integer not null check (part_no >= 0),
  data      bytea   not null check (length(data) between 1 and 1048576),
  primary key (upload_id, part_no)
);

create table shop.product_imports (
  import_id      bigint      primary key,
  store_id       text        not null check (length(store_id) between 1 and 64),
  format         text        not null check (format in ('csv', 'jsonl')),
  source         text        not null,
  state          text        not null default 'staging' check (state in ('staging', 'running', 'done')),
  staged_through integer     not null default 0,
  rows_total     integer,
  rows_valid     integer,
  rows_invalid   integer,
  skus           integer,
  chunks         integer,
  rows_done      integer,
  rows_failed    integer,
  created_at     timestamptz not null default now(),
  updated_at     timestamptz not null default now(),
  finished_at    timestamptz
);

create index product_imports_store_idx on shop.product_imports (store_id, created_at);

create table shop.product_import_rows (
  import_id   bigint        not null references shop.product_imports (import_id) on delete cascade,
  line_no     integer       not null,
  sku         text          not null,
  title       text          not null,
  description text          not null,
  price       numeric(14,2) not null,
  currency    char(3)       not null,
  stock       integer,
  attributes  jsonb         not null,
  primary key (import_id, line_no)
);

create index product_import_rows_sku_idx on shop.product_import_rows (import_id, sku, line_no);

create table shop.product_import_errors (
  import_id bigint  not null references shop.product_imports (import_id) on delete cascade,
  line_no   integer not null,
  sku       text,
  reason    text    not null,
  primary key (import_id, line_no)
);

create table shop.product_import_chunks (
  import_id   bigint      not null references shop.product_imports (import_id) on delete cascade,
  chunk_no    integer     not null,
  first_line  integer     not null,
  last_line   integer     not null,
  rows        integer     not null,
  job_id      bigint,
  state       text        not null default 'pending' check (state in ('pending', 'done', 'failed')),
  upserted    integer,
  error       jsonb,
  finished_at timestamptz,
  primary key (import_id, chunk_no)
);
