-- 0007: the frozen draw input of a window's lottery round. Additive only.

-- When a window closes, the registrations its round will draw over are
-- frozen: their ids (ascending) and the SHA-256 of their canonical
-- encoding (scheduler.EncodeInput), published at once, before the seed is
-- revealed. Never replaced: a round's runs draw over exactly this list,
-- and registrations added later go to the next round. The first real
-- lottery run of the window records itself and the slot inventory it
-- planned against, so that anyone can recompute its assignments. Not a
-- foreign key to windows: reloading a campaign replaces its windows.
CREATE TABLE lottery_rounds (
    campaign        text NOT NULL REFERENCES campaigns ON DELETE CASCADE,
    window_id       text NOT NULL,
    input_ids       bigint[] NOT NULL,
    input_hash      text NOT NULL,          -- hex sha256 of the canonical encoding
    frozen_at       timestamptz NOT NULL,
    run_id          bigint REFERENCES allocation_runs,
    max_distance_km double precision,
    inventory       jsonb,                  -- scheduler.Inventory as the run planned against it
    PRIMARY KEY (campaign, window_id)
);
