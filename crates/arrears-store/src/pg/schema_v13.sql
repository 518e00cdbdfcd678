-- Version 13 (as SQLite's schema_v13.sql): the customers whose worklist entries a
-- run may have rewritten, a JSON list; NULL after a full run.
ALTER TABLE runs ADD COLUMN touched TEXT;
