-- Version 15: write-offs at the end of the collection process. A proposal names one
-- item and its open amount; within the proposer's `write_off.limits` it is carried
-- out at once, beyond them it waits for someone whose limits cover it. Carried out,
-- the item's status is 'written_off' (an ERP update cannot bring it back to 'open')
-- and its case closes. `reported_on`: when an export for the ERP carried it.
CREATE TABLE write_offs (
    id             INTEGER PRIMARY KEY,
    item_id        INTEGER NOT NULL REFERENCES items(id),
    customer_id    INTEGER NOT NULL REFERENCES customers(id),
    -- pending (waits for approval), written_off, rejected
    status         TEXT NOT NULL,
    amount         TEXT NOT NULL,
    currency       TEXT NOT NULL,
    reason         TEXT NOT NULL,
    proposed_by    TEXT NOT NULL,
    proposed_on    TEXT NOT NULL,
    -- why the proposal needs approval; NULL when within the proposer's limits
    needs_approval TEXT,
    decided_by     TEXT,
    decided_on     TEXT,
    decision_note  TEXT,
    reported_on    TEXT
);
CREATE INDEX write_offs_item ON write_offs(item_id);
CREATE INDEX write_offs_customer ON write_offs(customer_id);
-- One proposal at a time per item: a ladder that proposes again on every run, or
-- two collectors at once, find the one waiting.
CREATE UNIQUE INDEX write_offs_pending ON write_offs(item_id) WHERE status = 'pending';
