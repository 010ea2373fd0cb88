-- The alphabet of each campaign's codes (issue 17). Campaigns created before alphabets
-- existed have full-alphabet codes, which is what the default gives their rows.
ALTER TABLE campaigns ADD COLUMN code_alphabet TEXT NOT NULL DEFAULT 'full'
    CHECK (code_alphabet IN ('readable', 'full'));
-- ListCampaigns' order, newest first: one index range per page.
CREATE INDEX campaigns_newest_first ON campaigns (created_at_ms DESC, id DESC);
