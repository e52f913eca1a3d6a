-- 0005_plugin_installations
-- Why:    `install.plugin` installs a plugin in steps (manifest, verified
--         download, record, setup hook) and must survive at-least-once
--         delivery: a retried job resumes at the step that failed.
--         * shop.plugin_installations: one row per (store, plugin), written
--           only once the archive's SHA-256 matched the manifest, so a corrupt
--           or tampered package never gets a row. `version` is the version
--           the row describes (its manifest and digest); `installed_version`
--           is what is live: during an upgrade the old one stays live until
--           the new version's setup hook succeeds.
--         * shop.plugin_install_steps: the step journal of a job run. Each
--           finished step writes its output here, keyed by job id, so a retry
--           of the same job skips it. Cleared when the job finishes (success
--           or permanent failure); rows of a job that ran out of attempts
--           stay, so a manual retry resumes, and can be pruned by created_at.
-- Locks:  creates new tables only.
-- Revert: forward-only. Undo by a later migration, never by editing this file.

create table shop.plugin_installations (
  id                 bigint      generated always as identity primary key,
  store_id           text        not null check (length(store_id) between 1 and 64),
  plugin_id          text        not null check (length(plugin_id) between 1 and 128),
  version            text        not null check (length(version) between 1 and 64),
  installed_version  text        check (length(installed_version) between 1 and 64),
  state              text        not null check (state in ('installing', 'installed', 'failed')),
  step               text        not null check (step in ('setup_hook', 'done')),
  manifest           jsonb       not null,
  archive_sha256     text        not null check (archive_sha256 ~ '^[0-9a-f]{64}$'),
  archive_size_bytes bigint      not null check (archive_size_bytes >= 0),
  job_id             text,
  last_error_code    text,
  created_at         timestamptz not null default now(),
  updated_at         timestamptz not null default now(),
  installed_at       timestamptz,
  constraint plugin_installations_store_id_plugin_id_key unique (store_id, plugin_id)
);

create table shop.plugin_install_steps (
  job_id     text        not null,
  step       text        not null check (step in ('manifest', 'download', 'record', 'setup_hook')),
  store_id   text        not null check (length(store_id) between 1 and 64),
  output     jsonb       not null,
  created_at timestamptz not null default now(),
  primary key (job_id, step)
);
