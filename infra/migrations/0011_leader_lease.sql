-- 0011_leader_lease
-- Why:    maintenance leadership moves from a session advisory lock to a
--         lease row. A leader that stops without dying (SIGSTOP, a debugger,
--         an event loop blocked by a handler) keeps its session, because the
--         kernel still answers TCP keepalives, so it kept the lock and no
--         follower took over: a 75 s stop made a job due in 1 s run 74 s late.
--         A lease ends by the database clock without its holder's help, and
--         it works through transaction-mode poolers, where a session lock
--         does not hold. The leader renews it well inside `expires_at`; a
--         follower takes it once that passed, adding one to `term`.
--         Maintenance statements renew or check it by (holder, term), so a
--         deposed leader's late statement changes nothing.
-- Locks:  creates a new table.
-- Index:  the primary key only: the table has at most one row.
-- Revert: forward-only. Undo by a later migration, never by editing this file.

create table leader_lease (
  id          boolean     primary key default true check (id),
  holder      text        not null check (length(holder) between 1 and 200),
  term        bigint      not null check (term > 0),
  acquired_at timestamptz not null,
  expires_at  timestamptz not null
) with (fillfactor = 10);  -- room on the page for HOT renewals, as for queue_clock
