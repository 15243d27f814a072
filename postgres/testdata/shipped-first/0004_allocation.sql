-- 0004: what batch allocation (the scheduler) keeps beside the shared
-- schema. Additive only.

-- A registration a run could not place keeps the reason and the run, so
-- the status lookup can say `unassigned` and the next round picks it up
-- again. Cleared when a later round assigns it.
ALTER TABLE registrations
    ADD COLUMN unassigned_reason text,
    ADD COLUMN unassigned_run_id bigint REFERENCES allocation_runs;
CREATE INDEX registrations_unassigned ON registrations (campaign) WHERE unassigned_reason IS NOT NULL;

-- A run fixes the registrations it considers (ids up to bound) and the
-- lottery commitment it drew with, so that a resumed run sees exactly what
-- the interrupted one saw.
ALTER TABLE allocation_runs
    ADD COLUMN bound bigint NOT NULL DEFAULT 0,
    ADD COLUMN seed_hash text;
CREATE INDEX allocation_runs_running ON allocation_runs (campaign) WHERE state = 'running';

-- Appointments by run: what a resumed run subtracts to rebuild the slots'
-- use as it was when the run started.
CREATE INDEX appointments_run ON appointments (run_id);

-- The lottery seed of a window: committed (its hash public) before the
-- window closes, never replaced, revealed with the first real run's result.
-- Not a foreign key to windows: reloading a campaign replaces its windows.
CREATE TABLE lottery_seeds (
    campaign      text NOT NULL REFERENCES campaigns ON DELETE CASCADE,
    window_id     text NOT NULL,
    seed          bytea NOT NULL CHECK (length(seed) = 32),
    seed_hash     text NOT NULL,          -- hex sha256(seed)
    committed_at  timestamptz NOT NULL,
    revealed_at   timestamptz,
    PRIMARY KEY (campaign, window_id)
);
