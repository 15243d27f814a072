-- 0016: a purge before the retention period ends (`prereg campaign purge
-- --early REASON`, postgres/purge.go, docs/OPERATIONS.md): a cancelled
-- campaign, a rehearsal, a data-protection order. The reason is kept
-- with the purge's record (the audit log has it too, with who and when);
-- NULL for a purge after the retention period.
ALTER TABLE campaign_purges
    ADD COLUMN early_reason text CHECK (early_reason IS NULL OR (btrim(early_reason) <> '' AND length(early_reason) <= 200));
