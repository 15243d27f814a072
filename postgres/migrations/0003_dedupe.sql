-- 0003: what the dedupe stage shares across its workers.
--
-- device_people counts the distinct people each device submitted for in a
-- window (DESIGN.md: devices are not sharded by identity, so every worker
-- must see the same count). rank is the order in which the device first
-- sent for the person: a person whose rank is above the campaign's
-- device_cap is held for review. Ranks are assigned under the row lock of
-- the device's device_windows row, so two workers never hand out the same
-- rank, and they are stored, so that a replayed batch decides the same way.
CREATE TABLE device_windows (
    campaign    text NOT NULL REFERENCES campaigns ON DELETE CASCADE,
    window_id   text NOT NULL,
    device_key  text NOT NULL,
    people      integer NOT NULL CHECK (people >= 0),
    PRIMARY KEY (campaign, window_id, device_key)
);

CREATE TABLE device_people (
    campaign      text NOT NULL REFERENCES campaigns ON DELETE CASCADE,
    window_id     text NOT NULL,
    device_key    text NOT NULL,
    identity_key  text NOT NULL,
    rank          integer NOT NULL CHECK (rank >= 1),
    first_receipt text NOT NULL,
    PRIMARY KEY (campaign, window_id, device_key, identity_key)
);
-- Which devices a person used (same_device / other_device).
CREATE INDEX device_people_identity ON device_people (campaign, identity_key);

-- Bloom filter counters per shard, written in the batch's transaction so
-- that the auditor's report can show them.
CREATE TABLE dedupe_counters (
    campaign         text NOT NULL REFERENCES campaigns ON DELETE CASCADE,
    shard            integer NOT NULL,
    maybe_seen       bigint NOT NULL DEFAULT 0,
    false_positives  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign, shard)
);

-- The held-review queue and the report's per-identity scoring.
CREATE INDEX decisions_held ON decisions (campaign, received_at) WHERE kind = 'held';
