-- Version 13: a run says whose worklist entries it may have rewritten. A replica
-- that follows the leader (PostgreSQL) reads only those entries again instead of
-- every entry; NULL after a full run, when any entry may differ. Only the latest
-- runs keep the list (a run clears the list of the run 64 before it): a replica
-- further behind reads every entry.
ALTER TABLE runs ADD COLUMN touched TEXT;
