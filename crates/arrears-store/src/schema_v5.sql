-- Version 5: payment agreements. The items an agreement replaces keep their rows with
-- status 'agreement' (an ERP update cannot bring them back to 'open'); the
-- instalments are items of their own (source 'agreement') that cases, dunning,
-- statements and KPIs treat like any other. Documents keep what was sent or signed.
CREATE TABLE agreements (
    id              INTEGER PRIMARY KEY,
    customer_id     INTEGER NOT NULL REFERENCES customers(id),
    -- pending (waits for approval), rejected, active, broken, paid
    status          TEXT NOT NULL,
    currency        TEXT NOT NULL,
    as_of           TEXT NOT NULL,
    plan            TEXT NOT NULL,
    installments    INTEGER NOT NULL,
    monthly_rate    TEXT NOT NULL,
    first_due       TEXT NOT NULL,
    principal       TEXT NOT NULL,
    fine            TEXT NOT NULL,
    interest        TEXT NOT NULL,
    costs           TEXT NOT NULL,
    discount_percent TEXT NOT NULL,
    discount        TEXT NOT NULL,
    debt            TEXT NOT NULL,
    -- JSON: the computation per item and the schedule, as proposed
    detail          TEXT NOT NULL,
    proposed_by     TEXT NOT NULL,
    proposed_on     TEXT NOT NULL,
    -- why the proposal needs approval; NULL when within the proposer's limits
    needs_approval  TEXT,
    decided_by      TEXT,
    decided_on      TEXT,
    decision_note   TEXT,
    ended_on        TEXT,
    end_reason      TEXT
);
CREATE INDEX agreements_customer ON agreements(customer_id);
CREATE TABLE agreement_items (
    agreement_id INTEGER NOT NULL REFERENCES agreements(id),
    item_id      INTEGER NOT NULL REFERENCES items(id),
    -- the open amount the proposal was computed on; activation checks it still holds
    open_amount  TEXT NOT NULL,
    PRIMARY KEY (agreement_id, item_id)
);
CREATE TABLE agreement_installments (
    agreement_id INTEGER NOT NULL REFERENCES agreements(id),
    number       INTEGER NOT NULL,
    due_date     TEXT NOT NULL,
    principal    TEXT NOT NULL,
    interest     TEXT NOT NULL,
    amount       TEXT NOT NULL,
    item_id      INTEGER REFERENCES items(id),
    PRIMARY KEY (agreement_id, number)
);
CREATE TABLE documents (
    id           INTEGER PRIMARY KEY,
    customer_id  INTEGER NOT NULL REFERENCES customers(id),
    agreement_id INTEGER REFERENCES agreements(id),
    kind         TEXT NOT NULL,
    language     TEXT NOT NULL,
    subject      TEXT NOT NULL,
    text         TEXT NOT NULL,
    html         TEXT,
    created_on   TEXT NOT NULL
);
CREATE INDEX documents_customer ON documents(customer_id);
