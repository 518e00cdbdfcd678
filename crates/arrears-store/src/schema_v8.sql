-- Version 8: a keyed audit chain. Each record names the key its MAC was computed
-- with (the key itself never lives in the database); empty for the records written
-- before, which keep their plain SHA-256 links.
ALTER TABLE audit ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
