-- 0014: the purge of a campaign's personal data after it ends
-- (`prereg campaign purge`, postgres/purge.go, docs/OPERATIONS.md).
--
-- A purged registration keeps its row (the audit trail, the report and
-- the round files name it) without its phone and birth date, so those
-- columns may be NULL from now on; only the purge leaves them so, and
-- every reader of a phone skips a registration without one.
ALTER TABLE registrations
    ALTER COLUMN birthdate DROP NOT NULL,
    ALTER COLUMN phone_kid DROP NOT NULL,
    ALTER COLUMN phone_enc DROP NOT NULL;

-- One row per purged campaign: when, and how many rows of each table the
-- first purge changed. A later purge (idempotent) changes nothing and
-- leaves the row as it is; a resend refuses a purged campaign's
-- appointment, which has no phone left to send to.
CREATE TABLE campaign_purges (
    campaign   text PRIMARY KEY REFERENCES campaigns ON DELETE CASCADE,
    purged_at  timestamptz NOT NULL,
    removed    jsonb NOT NULL
);
