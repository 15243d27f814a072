-- 0010: the audit log of admin actions (docs/SECURITY.md, "Admin tokens
-- and the audit log"). Every state-changing admin request and CLI command
-- is written here before it acts, and its outcome after.
--
-- The row says who by role and token id (a short keyed hash of the token,
-- or the local user for a CLI command), never the token itself; what
-- (action) and on what (target: campaign, window, submission,
-- appointment, which are pseudonymous). It holds no personal data, so
-- `campaign purge` keeps it.
CREATE TABLE admin_audit (
	id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at       timestamptz NOT NULL,
	role     text NOT NULL CHECK (role <> '' AND length(role) <= 32),
	token_id text NOT NULL CHECK (token_id <> '' AND length(token_id) <= 64),
	action   text NOT NULL CHECK (action <> '' AND length(action) <= 64),
	target   text NOT NULL DEFAULT '' CHECK (length(target) <= 512),
	-- outcome is the answer's HTTP status, or ok / error for a command;
	-- NULL while the action is under way (or when it never finished).
	outcome  text CHECK (length(outcome) <= 32)
);
CREATE INDEX admin_audit_at ON admin_audit (at DESC, id DESC);

-- Append-only: a row is never deleted, and the only change is its
-- outcome, once, from NULL. Whoever holds the database role of the
-- application cannot rewrite what an admin did through it.
CREATE FUNCTION admin_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'DELETE' THEN
		RAISE EXCEPTION 'admin_audit is append-only';
	END IF;
	IF OLD.outcome IS NOT NULL OR NEW.id <> OLD.id OR NEW.at <> OLD.at OR NEW.role <> OLD.role
		OR NEW.token_id <> OLD.token_id OR NEW.action <> OLD.action OR NEW.target <> OLD.target THEN
		RAISE EXCEPTION 'admin_audit is append-only: only a NULL outcome may be set';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER admin_audit_append_only BEFORE UPDATE OR DELETE ON admin_audit
	FOR EACH ROW EXECUTE FUNCTION admin_audit_append_only();
