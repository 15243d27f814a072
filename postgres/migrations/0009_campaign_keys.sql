-- 0009: each campaign's HMAC key id. A campaign keeps the key it started
-- with: its identity, device and address keys are HMACs, and a new key
-- would make every returning person someone new. New campaigns are pinned
-- to the current key when they are loaded.
--
-- Campaigns loaded before this migration have no key id yet (NULL): the
-- first process with keys that reads one (CampaignStore, with HMACKeyID
-- set: every `serve` role) pins it to its current key, the key its
-- identity keys were made with, since rotation needs this migration
-- first (docs/SECURITY.md, "Keys and rotation").
ALTER TABLE campaigns ADD COLUMN hmac_key text CHECK (hmac_key <> '');

-- Once pinned, never changed: not by a reload, not by hand.
CREATE FUNCTION campaigns_hmac_key_pinned() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.hmac_key IS NOT NULL AND NEW.hmac_key IS DISTINCT FROM OLD.hmac_key THEN
        RAISE EXCEPTION 'campaign %: its HMAC key id % is pinned and cannot change', OLD.id, OLD.hmac_key
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER campaigns_hmac_key_pinned BEFORE UPDATE OF hmac_key ON campaigns
    FOR EACH ROW EXECUTE FUNCTION campaigns_hmac_key_pinned();
