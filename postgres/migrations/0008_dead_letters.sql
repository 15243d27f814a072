-- 0008: dead letters (docs/STREAMS.md, "Dead letters"). A message a stage
-- cannot turn into a decision (undecodable, without receipt, for a
-- campaign that is not loaded) is recorded here before it is terminated,
-- so that an accepted intent is never dropped silently and an operator
-- can list it and re-drive it.
--
-- The payload is kept only for the verified stream, whose outcomes hold
-- no raw personal data (phones sealed, keys hashed). A submitted-stream
-- message may hold an identity token: only its SHA-256 and length are
-- kept. reason is a short code; detail a sanitised message, never
-- payload text. msg_id is the Nats-Msg-Id header: a receipt.
CREATE TABLE dead_letters (
	id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	stream         text NOT NULL CHECK (stream IN ('INTENTS_SUBMITTED', 'INTENTS_VERIFIED')),
	subject        text NOT NULL CHECK (length(subject) <= 256),
	stream_seq     bigint NOT NULL,
	msg_id         text NOT NULL DEFAULT '' CHECK (length(msg_id) <= 128),
	reason         text NOT NULL CHECK (reason <> '' AND length(reason) <= 32),
	detail         text NOT NULL DEFAULT '' CHECK (length(detail) <= 512),
	payload        bytea CHECK (payload IS NULL OR stream = 'INTENTS_VERIFIED'),
	payload_sha256 bytea NOT NULL CHECK (length(payload_sha256) = 32),
	payload_len    integer NOT NULL CHECK (payload_len >= 0),
	first_seen_at  timestamptz NOT NULL,
	redriven_at    timestamptz,
	-- A message redelivered after its dead letter was written (a lost
	-- term) is recorded once.
	UNIQUE (stream, stream_seq)
);
CREATE INDEX dead_letters_msg_id ON dead_letters (msg_id) WHERE msg_id <> '';
