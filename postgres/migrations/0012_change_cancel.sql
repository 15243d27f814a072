-- 0012: a citizen's change of preferred clinic and cancellation, asked
-- with a receipt and a birth date (docs/DESIGN.md, "Changing and
-- cancelling"). Intake records the request before the submission may
-- even be decided; it takes effect when the receipt's decision exists and
-- names the same claimed birth date (postgres/requests.go, "resolve"),
-- whichever of the two comes first. Nothing here holds personal data
-- beyond the claimed birth date decisions already keep.

-- One row per (receipt, birth date) a cancellation was asked with: only
-- the row whose date is the submission's takes effect, so a request with
-- a wrong date for an undecided receipt cancels nothing.
CREATE TABLE cancellations (
    receipt          text NOT NULL,
    birthdate        date,                   -- as given; NULL only once purged
    requested_at     timestamptz NOT NULL DEFAULT now(),
    -- Set when resolved against the decision: applied (the submission's
    -- date; registration_id is the person's registration it cancelled,
    -- if any) or void (another date).
    outcome          text CHECK (outcome IN ('applied', 'void')),
    campaign         text,
    registration_id  bigint,
    -- The order of applied cancellations of registrations: a run records
    -- the highest it has seen (allocation_runs.cancel_bound), so that a
    -- resumed run leaves out exactly the registrations the interrupted
    -- one left out.
    resolved_seq     bigint,
    resolved_at      timestamptz,
    UNIQUE (receipt, birthdate),
    CONSTRAINT cancellations_resolved CHECK ((outcome IS NULL) = (resolved_at IS NULL))
);
CREATE INDEX cancellations_registration ON cancellations (registration_id) WHERE registration_id IS NOT NULL;
CREATE INDEX cancellations_pending ON cancellations (receipt) WHERE outcome IS NULL;
CREATE INDEX cancellations_campaign ON cancellations (campaign, resolved_at) WHERE campaign IS NOT NULL;
CREATE SEQUENCE cancellation_resolutions;

-- The preferred clinic a citizen asked for, latest first per (receipt,
-- birth date). Applied to the person's registration while no round holds
-- it (no appointment, not in a frozen lottery input, no real run under
-- way); refused after.
CREATE TABLE clinic_changes (
    receipt          text NOT NULL,
    birthdate        date,                   -- NULL only once purged
    clinic           text NOT NULL,
    requested_at     timestamptz NOT NULL DEFAULT now(),
    outcome          text CHECK (outcome IN ('applied', 'refused', 'void')),
    registration_id  bigint,
    resolved_at      timestamptz,
    UNIQUE (receipt, birthdate)
);
CREATE INDEX clinic_changes_pending ON clinic_changes (receipt) WHERE outcome IS NULL;

ALTER TABLE allocation_runs ADD COLUMN cancel_bound bigint NOT NULL DEFAULT 0;

-- The outbox carries a second kind of message: the confirmation of a
-- cancellation, one per registration (the unique index), sent to the
-- registration's phone. It names the registration, not an appointment.
ALTER TABLE outbox
    ALTER COLUMN appointment_id DROP NOT NULL,
    ADD COLUMN kind text NOT NULL DEFAULT 'appointment' CHECK (kind IN ('appointment', 'cancellation')),
    ADD COLUMN registration_id bigint REFERENCES registrations,
    ADD CONSTRAINT outbox_kind_names_target CHECK (
        (kind = 'appointment' AND appointment_id IS NOT NULL) OR
        (kind = 'cancellation' AND appointment_id IS NULL AND registration_id IS NOT NULL));
CREATE UNIQUE INDEX outbox_one_cancellation ON outbox (registration_id) WHERE kind = 'cancellation';
