-- Open promises by the day they fall due: every run judges those whose day (plus
-- the tolerance) has passed. Unindexed, that was a pass over every promise ever
-- made, on every run, however small.
CREATE INDEX promises_open_due ON promises(promised_on, id) WHERE status = 'open';
