-- 0006: a lighter write path for dedupe, the stage that writes a row for
-- every submission (docs/BENCHMARKS.md, "Dedupe", has the measurements).
--
-- 1. A device's distinct people in a window are its highest rank in
--    device_people: ranks are dense, handed out under a per-device
--    advisory lock (postgres/dedupe.go, CountDevices). The counter row per
--    device was one more row written for most submissions.
DROP TABLE device_windows;

-- 2. Decisions are the widest write of the pipeline, one per submission.
--    Their foreign keys cost a lookup per row and, for registration_id, a
--    row lock that dirties the registration's page: about 60 % more time
--    per insert, measured. `prereg check` verifies the same references
--    (invariants 1 and 5: a registered or duplicate decision names an
--    existing registration of the same person) and tests that it catches
--    a decision naming none. device_people's reference to campaigns goes
--    for the same reason; campaigns are never deleted while they run.
ALTER TABLE decisions DROP CONSTRAINT decisions_campaign_fkey;
ALTER TABLE decisions DROP CONSTRAINT decisions_registration_id_fkey;
ALTER TABLE device_people DROP CONSTRAINT device_people_campaign_fkey;
