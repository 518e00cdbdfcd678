-- Arrears schema, version 1. Amounts are exact decimal TEXT; dates are ISO TEXT.
CREATE TABLE customers (
    id            INTEGER PRIMARY KEY,
    company       TEXT NOT NULL,
    code          TEXT NOT NULL,
    name          TEXT NOT NULL,
    country       TEXT NOT NULL DEFAULT '',
    email         TEXT,
    phone         TEXT,
    language      TEXT,
    timezone      TEXT,
    credit_limit  TEXT,
    credit_currency TEXT,
    -- bumped by every change that can alter the customer's result; a run resets it
    -- to 0 only from the value it loaded
    dirty         INTEGER NOT NULL DEFAULT 1,
    UNIQUE (company, code)
);

CREATE TABLE items (
    id              INTEGER PRIMARY KEY,
    source          TEXT NOT NULL,
    external_id     TEXT NOT NULL,
    customer_id     INTEGER NOT NULL REFERENCES customers(id),
    document_no     TEXT NOT NULL,
    document_date   TEXT NOT NULL,
    due_date        TEXT NOT NULL,
    original_amount TEXT NOT NULL,
    open_amount     TEXT NOT NULL,
    currency        TEXT NOT NULL,
    hold_reason     TEXT,
    hold_until      TEXT,
    original_document TEXT,
    -- 'open' or 'cleared' (zero open amount or disappeared from a snapshot)
    status          TEXT NOT NULL DEFAULT 'open',
    UNIQUE (source, external_id)
);
CREATE INDEX items_customer ON items(customer_id);

CREATE TABLE payments (
    id          INTEGER PRIMARY KEY,
    source      TEXT NOT NULL,
    external_id TEXT NOT NULL,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    item_id     INTEGER REFERENCES items(id),
    amount      TEXT NOT NULL,
    currency    TEXT NOT NULL,
    value_date  TEXT NOT NULL,
    reference   TEXT NOT NULL DEFAULT '',
    UNIQUE (source, external_id)
);
CREATE INDEX payments_customer ON payments(customer_id);

CREATE TABLE cases (
    id              INTEGER PRIMARY KEY,
    item_id         INTEGER NOT NULL REFERENCES items(id),
    customer_id     INTEGER NOT NULL REFERENCES customers(id),
    status          TEXT NOT NULL DEFAULT 'open',
    opened_on       TEXT NOT NULL,
    closed_on       TEXT,
    close_reason    TEXT,
    external_ref    TEXT,
    nad             TEXT NOT NULL,
    priority        INTEGER NOT NULL,
    assigned_to     TEXT,
    -- activity state: 'none' | 'open' | 'completed'
    activity        TEXT NOT NULL DEFAULT 'none',
    category        TEXT,
    subcategory     TEXT,
    days_to_complete INTEGER,
    last_edited_on  TEXT,
    completed_on    TEXT,
    ptp_date        TEXT
);
-- at most one open case per item
CREATE UNIQUE INDEX cases_open_item ON cases(item_id) WHERE status = 'open';
CREATE INDEX cases_customer ON cases(customer_id);

-- Append-only history of every case: creation, activities, notes, closing.
CREATE TABLE case_events (
    id       INTEGER PRIMARY KEY,
    case_id  INTEGER NOT NULL REFERENCES cases(id),
    on_date  TEXT NOT NULL,
    kind     TEXT NOT NULL,
    actor    TEXT NOT NULL,
    detail   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX case_events_case ON case_events(case_id);
CREATE TRIGGER case_events_no_update BEFORE UPDATE ON case_events
BEGIN SELECT RAISE(ABORT, 'case history is append-only'); END;
CREATE TRIGGER case_events_no_delete BEFORE DELETE ON case_events
BEGIN SELECT RAISE(ABORT, 'case history is append-only'); END;

CREATE TABLE promises (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    case_id     INTEGER REFERENCES cases(id),
    amount      TEXT NOT NULL,
    currency    TEXT NOT NULL,
    promised_on TEXT NOT NULL,
    created_on  TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'open',
    judged_on   TEXT
);
CREATE INDEX promises_customer ON promises(customer_id);

CREATE TABLE disputes (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    case_id     INTEGER REFERENCES cases(id),
    reason      TEXT NOT NULL,
    opened_on   TEXT NOT NULL,
    resolved_on TEXT,
    resolution  TEXT
);
CREATE TABLE dispute_items (
    dispute_id INTEGER NOT NULL REFERENCES disputes(id),
    item_id    INTEGER NOT NULL REFERENCES items(id),
    PRIMARY KEY (dispute_id, item_id)
);
CREATE INDEX dispute_items_item ON dispute_items(item_id);

-- Holds on a whole customer (item-level holds live on the item).
CREATE TABLE holds (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    reason      TEXT NOT NULL,
    until       TEXT,
    created_on  TEXT NOT NULL
);

CREATE TABLE resubmissions (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    on_date     TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    actor       TEXT NOT NULL
);
CREATE INDEX resubmissions_customer ON resubmissions(customer_id);

-- Result of the last run per customer, plus the dunning state it carries forward.
CREATE TABLE customer_state (
    customer_id    INTEGER PRIMARY KEY REFERENCES customers(id),
    strategy       TEXT NOT NULL,
    segment        TEXT NOT NULL,
    profile        TEXT NOT NULL,
    score          TEXT NOT NULL,
    collection_group TEXT NOT NULL,
    collector      TEXT,
    priority       INTEGER NOT NULL,
    dunning_level  INTEGER NOT NULL DEFAULT 0,
    dunning_on     TEXT,
    as_of          TEXT NOT NULL
);

CREATE TABLE worklist (
    customer_id INTEGER PRIMARY KEY REFERENCES customers(id),
    collection_group TEXT NOT NULL,
    collector   TEXT,
    score       TEXT NOT NULL,
    priority    INTEGER NOT NULL,
    nad         TEXT NOT NULL,
    items       INTEGER NOT NULL,
    amount      TEXT NOT NULL,
    reason      TEXT NOT NULL
);
CREATE INDEX worklist_collector ON worklist(collector, nad);

-- Escalation steps decided by runs: the outbox the correspondence channels work from.
CREATE TABLE escalations (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    run_id      INTEGER NOT NULL,
    as_of       TEXT NOT NULL,
    ladder      TEXT NOT NULL,
    level       INTEGER NOT NULL,
    level_name  TEXT NOT NULL,
    channel     TEXT NOT NULL,
    template    TEXT NOT NULL,
    copy_manager INTEGER NOT NULL,
    amount      TEXT NOT NULL,
    items       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending',
    UNIQUE (customer_id, as_of)
);

CREATE TABLE customer_events (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    on_date     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX customer_events_customer ON customer_events(customer_id);

CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    as_of       TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    rules_hash  TEXT NOT NULL,
    mode        TEXT NOT NULL,
    summary     TEXT NOT NULL
);
