-- 0011: the per-phone cap (campaign limits.phone_cap, docs/DEDUPE.md).
--
-- phone_people holds one row per (phone, person) registered with that
-- phone in a campaign: the phone's registrations are its rows. phone_key is
-- the keyed hash verify makes of the phone (never the phone); dedupe reads
-- a phone's rows and adds one under a transaction-scoped advisory lock on
-- the phone, in the transaction that inserts the registration, so no two
-- workers can both take a phone's last slot. A person holds at most one
-- slot (they register once). A registration that ends (cancelled) frees
-- its slot by deleting its row (postgres.FreePhoneSlot).
CREATE TABLE phone_people (
    campaign      text NOT NULL,
    phone_key     text NOT NULL,
    identity_key  text NOT NULL,
    first_receipt text NOT NULL,
    PRIMARY KEY (campaign, phone_key, identity_key)
);
-- Freeing a person's slot, and the purge.
CREATE INDEX phone_people_identity ON phone_people (campaign, identity_key);

-- A decision held for review keeps its phone's keyed hash, so that a
-- release takes the phone's slot like any registration (NULL on every
-- other decision).
ALTER TABLE decisions ADD COLUMN phone_key text;
