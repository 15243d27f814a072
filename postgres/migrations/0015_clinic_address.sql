-- 0015: a clinic's street address, which the citizen's page lists beside
-- its name and the status lookup shows with an appointment
-- (docs/CAMPAIGN.md, clinics). Clinics loaded before it have none.
ALTER TABLE clinics ADD COLUMN address text NOT NULL DEFAULT '' CHECK (length(address) <= 200);
