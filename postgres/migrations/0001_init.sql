-- 0001: the schema the whole pipeline shares. Every invariant of DESIGN.md
-- section 6 that a constraint can express is expressed here, so that a bug
-- cannot quietly break it; `prereg check` verifies the rest (and these too,
-- in case a constraint was dropped).
--
-- Tables are keyed by campaign (and shard where the stage is sharded) so
-- that they can be partitioned later. Keys (identity, device, address) are
-- hex HMAC-SHA-256 strings; phones are AES-GCM ciphertexts with a key id.

CREATE TABLE campaigns (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    spec        jsonb NOT NULL,            -- campaign.File as loaded (without clinics)
    shards      integer NOT NULL CHECK (shards BETWEEN 1 AND 1024),
    device_cap  integer NOT NULL CHECK (device_cap >= 1),
    loaded_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE windows (
    campaign    text NOT NULL REFERENCES campaigns ON DELETE CASCADE,
    id          text NOT NULL,
    opens       timestamptz NOT NULL,
    closes      timestamptz NOT NULL,
    digits      smallint[] NOT NULL,
    catch_up    boolean NOT NULL DEFAULT false,
    PRIMARY KEY (campaign, id),
    CHECK (closes > opens)
);

CREATE TABLE clinics (
    campaign    text NOT NULL REFERENCES campaigns ON DELETE CASCADE,
    id          text NOT NULL,
    name        text NOT NULL,
    region      text NOT NULL,
    lat         double precision NOT NULL,
    lng         double precision NOT NULL,
    PRIMARY KEY (campaign, id)
);
CREATE INDEX clinics_region ON clinics (campaign, region);

-- A slot is one clinic's capacity in one band of one day. used counts the
-- live appointments in it; the CHECK makes over-booking impossible
-- (invariant 3) whatever the allocator does.
CREATE TABLE slots (
    campaign    text NOT NULL,
    clinic      text NOT NULL,
    day         date NOT NULL,
    band        smallint NOT NULL,
    capacity    integer NOT NULL CHECK (capacity >= 0),
    used        integer NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign, clinic, day, band),
    FOREIGN KEY (campaign, clinic) REFERENCES clinics ON DELETE CASCADE,
    CONSTRAINT slots_capacity CHECK (used >= 0 AND used <= capacity)
);

-- One registration per (campaign, person): invariant 2.
CREATE TABLE registrations (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign        text NOT NULL REFERENCES campaigns ON DELETE CASCADE,
    identity_key    text NOT NULL,
    shard           integer NOT NULL,
    window_id       text NOT NULL,
    birthdate       date NOT NULL,          -- verified
    region          text NOT NULL,
    clinic          text,                   -- preferred clinic, if any
    earliest        date,
    phone_kid       text NOT NULL,
    phone_enc       bytea NOT NULL,
    phone_verified  boolean NOT NULL DEFAULT false,
    first_receipt   text NOT NULL,
    device_key      text NOT NULL,          -- of the first submission
    received_at     timestamptz NOT NULL,   -- arrival of the first submission (fcfs order)
    registered_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT registrations_one_per_person UNIQUE (campaign, identity_key)
);
CREATE INDEX registrations_window ON registrations (campaign, window_id);

-- One decision per accepted submission: invariant 1 (the primary key makes
-- "counted twice" impossible; `check` compares against the stream for "none
-- lost"). A duplicate names the registration it matched and why: invariant 5.
CREATE TABLE decisions (
    campaign         text NOT NULL REFERENCES campaigns ON DELETE CASCADE,
    receipt          text NOT NULL,
    shard            integer NOT NULL,
    window_id        text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('registered', 'duplicate', 'held', 'rejected')),
    reason           text NOT NULL DEFAULT '',
    provider         text NOT NULL,
    identity_key     text,                  -- null when the provider gave no identity
    registration_id  bigint REFERENCES registrations,
    matched_receipt  text,                  -- duplicate: the first submission of the registration
    device_key       text NOT NULL,
    addr_key         text,
    birthdate        date,                  -- claimed
    region           text,
    -- Held submissions keep what a release needs to register the person.
    clinic           text,
    earliest         date,
    phone_kid        text,
    phone_enc        bytea,
    phone_verified   boolean NOT NULL DEFAULT false,
    received_at      timestamptz NOT NULL,
    decided_at       timestamptz NOT NULL DEFAULT now(),
    -- An operator's review of a held decision, recorded beside it.
    review           text CHECK (review IN ('released', 'rejected')),
    reviewed_by      text,
    reviewed_at      timestamptz,
    PRIMARY KEY (campaign, receipt),
    CONSTRAINT decisions_registered_names_registration CHECK (kind <> 'registered' OR registration_id IS NOT NULL),
    CONSTRAINT decisions_duplicate_names_match CHECK (kind <> 'duplicate' OR (registration_id IS NOT NULL AND reason <> '')),
    CONSTRAINT decisions_review_only_held CHECK (review IS NULL OR kind = 'held')
);
CREATE UNIQUE INDEX decisions_receipt ON decisions (receipt);
CREATE INDEX decisions_window_kind ON decisions (campaign, window_id, kind);
CREATE INDEX decisions_registration ON decisions (registration_id);
CREATE INDEX decisions_device ON decisions (campaign, device_key);

-- Allocation runs: one row per `prereg allocate` (dry or real).
CREATE TABLE allocation_runs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign     text NOT NULL REFERENCES campaigns ON DELETE CASCADE,
    window_id    text NOT NULL,
    policy       text NOT NULL CHECK (policy IN ('lottery', 'fcfs')),
    dry_run      boolean NOT NULL,
    state        text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done', 'failed')),
    total        integer NOT NULL DEFAULT 0,
    done         integer NOT NULL DEFAULT 0,
    result       jsonb,
    error        text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);

-- At most one appointment per registration: invariant 3.
CREATE TABLE appointments (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign         text NOT NULL,
    registration_id  bigint NOT NULL REFERENCES registrations,
    clinic           text NOT NULL,
    day              date NOT NULL,
    band             smallint NOT NULL,
    run_id           bigint REFERENCES allocation_runs,
    status           text NOT NULL DEFAULT 'scheduled' CHECK (status IN ('scheduled', 'cancelled')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (campaign, clinic, day, band) REFERENCES slots,
    CONSTRAINT appointments_one_per_registration UNIQUE (registration_id)
);
CREATE INDEX appointments_slot ON appointments (campaign, clinic, day, band);

-- The SMS outbox, written in the same transaction as its appointment. Each
-- row is one message version; an operator's resend adds a version. The
-- idempotency key goes to the gateway so that a crash between "accepted"
-- and "marked sent" does not send twice (invariant 4).
CREATE TABLE outbox (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign            text NOT NULL,
    appointment_id      bigint NOT NULL REFERENCES appointments,
    version             integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    idempotency_key     text NOT NULL UNIQUE,
    state               text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'delivered', 'failed')),
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    gateway_message_id  text,
    last_error          text,
    requested_by        text,               -- the operator of a resend; null for the first message
    created_at          timestamptz NOT NULL DEFAULT now(),
    sent_at             timestamptz,
    delivered_at        timestamptz,
    UNIQUE (appointment_id, version)
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'pending';
