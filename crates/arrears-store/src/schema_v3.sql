-- Version 3: bank statements. Each imported file is kept byte for byte (nothing a
-- user gave us is lost); each statement in it is recognised again by a content key,
-- so importing the same statement twice, even in another file, pays nothing twice.
CREATE TABLE statement_files (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    sha256      TEXT NOT NULL UNIQUE,
    format      TEXT NOT NULL,
    version     TEXT NOT NULL,
    imported_at TEXT NOT NULL,
    content     BLOB NOT NULL
);
CREATE TABLE statements (
    id          INTEGER PRIMARY KEY,
    file_id     INTEGER NOT NULL REFERENCES statement_files(id),
    content_key TEXT NOT NULL UNIQUE,
    statement_ref TEXT NOT NULL,
    sequence    TEXT,
    account     TEXT NOT NULL,
    currency    TEXT,
    opening     TEXT,
    closing     TEXT
);
-- Every credit found, matched or not. The review queue is the credits whose status
-- is 'unmatched' or 'review', or that left an amount unapplied (unapplied > 0).
CREATE TABLE statement_credits (
    id           INTEGER PRIMARY KEY,
    statement_id INTEGER NOT NULL REFERENCES statements(id),
    line         INTEGER NOT NULL,
    entry_no     INTEGER NOT NULL,
    tx_no        INTEGER NOT NULL,
    amount       TEXT NOT NULL,
    currency     TEXT NOT NULL,
    booking_date TEXT,
    value_date   TEXT,
    end_to_end_id TEXT,
    refs         TEXT NOT NULL DEFAULT '',
    remittance   TEXT NOT NULL DEFAULT '',
    debtor_name  TEXT,
    debtor_account TEXT,
    -- matched | partial | review | unmatched | resolved | dismissed
    status       TEXT NOT NULL,
    method       TEXT,
    confidence   TEXT,
    customer_id  INTEGER REFERENCES customers(id),
    applied      TEXT NOT NULL DEFAULT '0',
    unapplied    TEXT NOT NULL DEFAULT '0',
    note         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX statement_credits_status ON statement_credits(status);
CREATE TABLE credit_allocations (
    credit_id INTEGER NOT NULL REFERENCES statement_credits(id),
    item_id   INTEGER NOT NULL REFERENCES items(id),
    amount    TEXT NOT NULL,
    -- applied: cleared the item (partly); suggested: awaits a person's confirmation
    kind      TEXT NOT NULL,
    PRIMARY KEY (credit_id, item_id)
);
-- Matching looks items up by document number and customers by name.
CREATE INDEX items_document ON items(document_no);
CREATE INDEX customers_name ON customers(name COLLATE NOCASE);

-- Connectors: health and the cursor a restart resumes from.
CREATE TABLE connector_state (
    name          TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    cursor        TEXT,
    last_attempt  TEXT,
    last_success  TEXT,
    last_error    TEXT,
    pulled_total  INTEGER NOT NULL DEFAULT 0,
    errors_total  INTEGER NOT NULL DEFAULT 0
);

-- Credit bureau lookups: the latest per customer (score NULL: the bureau does not
-- know the customer).
CREATE TABLE bureau_scores (
    customer_id INTEGER PRIMARY KEY REFERENCES customers(id),
    bureau      TEXT NOT NULL,
    score       INTEGER,
    risk_class  TEXT,
    fetched_at  TEXT NOT NULL
);

-- Negative listings registered at a bureau, and their removal.
CREATE TABLE bureau_listings (
    id          INTEGER PRIMARY KEY,
    item_id     INTEGER NOT NULL REFERENCES items(id),
    bureau      TEXT NOT NULL,
    listing_ref TEXT NOT NULL,
    listed_on   TEXT NOT NULL,
    removed_on  TEXT,
    reason      TEXT
);
CREATE UNIQUE INDEX bureau_listings_active ON bureau_listings(item_id, bureau) WHERE removed_on IS NULL;
