-- 0013: operators' pauses of a campaign's intake (docs/DESIGN.md, "HTTP",
-- POST /admin/v1/campaigns/{campaign}/pause). One row per paused campaign;
-- a resume deletes it. Every intake replica reads the table with the
-- campaigns in the background, never on a submission, and answers the
-- campaign's submissions 503 "paused" while the row holds (until
-- reopens_at, or until resumed when it is NULL). Who paused and resumed is
-- in admin_audit; paused_by repeats it (role and token id) for the
-- console. No personal data.
CREATE TABLE intake_pauses (
	campaign   text PRIMARY KEY REFERENCES campaigns ON DELETE CASCADE,
	paused_at  timestamptz NOT NULL,
	reopens_at timestamptz CHECK (reopens_at IS NULL OR reopens_at > paused_at),
	paused_by  text NOT NULL CHECK (paused_by <> '' AND length(paused_by) <= 128)
);
