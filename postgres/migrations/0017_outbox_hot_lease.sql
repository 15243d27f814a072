-- 0017: a claim's lease is an update PostgreSQL can make in place.
--
-- Until now a claim moved next_attempt_at to the lease's end, so that the
-- row left the due set until the lease ran out. next_attempt_at is the
-- key of the due index, so every lease wrote a new entry in each of the
-- outbox's indexes, and then the outcome (which changes state, the due
-- index's predicate) wrote another set: two full updates per message.
--
-- The lease's end now has a column of its own, in no index: a claim sets
-- lease_owner and leased_until and leaves next_attempt_at alone, and a
-- row is due when next_attempt_at has passed and it holds no running
-- lease. Such an update is HOT (heap-only) when the new row version fits
-- on its page: no index is written. Claims take rows in the order they
-- were written, a page's rows all at once, and a leased version is about
-- a quarter longer than the row as written (the owner and the lease's
-- end filled in), so a page keeps more than half of itself free
-- (fillfactor 45) for its rows' leases; the outcome's update then finds
-- the space the old versions held, pruned. At fillfactor 50 a fifth of
-- the leases found no room on their page; at 70 to 80 most would not.
--
-- Rows leased before this migration (leased_until NULL, next_attempt_at
-- at their lease's end) stay out of reach until their lease runs out, as
-- before. A notify worker of an earlier version does not know
-- leased_until and would take rows this version leased: stop those
-- before starting this one. The fillfactor applies to pages written from
-- now on.
ALTER TABLE outbox
    SET (fillfactor = 45),
    ADD COLUMN leased_until timestamptz;
