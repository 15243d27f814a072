-- 0005: what the notify stage needs beyond the outbox of 0001.
--
-- Claims are leases, not long transactions: a worker claims due rows with
-- FOR UPDATE SKIP LOCKED, stamps them with its lease (lease_owner, and
-- next_attempt_at moved to the lease's end) and commits, then sends outside
-- any transaction. A worker that dies mid-send leaves its lease behind; when
-- the lease has run out another worker reclaims the row and sends it again
-- under the same idempotency key. Such a reclaim is the only way a message
-- can reach a gateway twice, so it is counted (unconfirmed_sends) rather
-- than left silent.
ALTER TABLE outbox
    ADD COLUMN lease_owner        text,
    ADD COLUMN unconfirmed_sends  integer NOT NULL DEFAULT 0,
    ADD COLUMN message_type       text CHECK (message_type IN ('sms', 'lms')),
    ADD COLUMN failed_at          timestamptz,
    ADD COLUMN resend_reason      text;

-- Every delivery report the gateway posted, once per (message, status):
-- the webhook may be called more than once for the same report.
CREATE TABLE delivery_reports (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outbox_id           bigint NOT NULL REFERENCES outbox,
    gateway_message_id  text NOT NULL,
    status              text NOT NULL CHECK (status IN ('delivered', 'failed')),
    error               text,
    reported_at         timestamptz NOT NULL,   -- the gateway's time
    received_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (gateway_message_id, status)
);
CREATE INDEX delivery_reports_outbox ON delivery_reports (outbox_id);
