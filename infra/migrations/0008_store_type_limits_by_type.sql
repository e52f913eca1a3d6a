-- 0008_store_type_limits_by_type
-- Why:    the limited claim asks, per job type, for the smallest limit any
--         store has on it (to skip counting running jobs per store while no
--         store's limit can bind: claim-limited.ts). The primary key leads
--         with store_id, so without this index that question reads every
--         store's override of every type on every claim.
-- Locks:  a plain CREATE INDEX on a small settings table (SHARE lock on
--         store_type_limits for its few milliseconds; claims only read it).
-- Revert: forward-only. Undo by a later migration, never by editing this file.

create index store_type_limits_type_idx on store_type_limits (type, max_running);
