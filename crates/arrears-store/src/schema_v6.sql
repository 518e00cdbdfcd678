-- Version 6: correspondence. Contact preferences per customer (e-mail, phone,
-- language and time zone are there since version 1); an outbox of
-- messages, each a delivery attempt on one channel (a fallback is a new row pointing
-- at the one it replaces); fees charged once per item and escalation level.
ALTER TABLE customers ADD COLUMN address TEXT;
ALTER TABLE customers ADD COLUMN do_not_contact INTEGER NOT NULL DEFAULT 0;
-- channels the customer opted out of, comma separated (email,sms,…)
ALTER TABLE customers ADD COLUMN opt_outs TEXT NOT NULL DEFAULT '';
CREATE TABLE messages (
    id            INTEGER PRIMARY KEY,
    customer_id   INTEGER NOT NULL REFERENCES customers(id),
    escalation_id INTEGER REFERENCES escalations(id),
    channel       TEXT NOT NULL,
    template      TEXT NOT NULL,
    language      TEXT NOT NULL,
    recipient     TEXT,
    cc            TEXT NOT NULL DEFAULT '',
    subject       TEXT NOT NULL,
    text          TEXT NOT NULL,
    html          TEXT,
    -- queued, deferred, sent, failed (given up on this channel), cancelled
    status        TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    -- UTC, RFC 3339: not before
    next_attempt  TEXT NOT NULL,
    last_error    TEXT,
    defer_reason  TEXT,
    created_at    TEXT NOT NULL,
    sent_at       TEXT,
    receipt       TEXT,
    replaces      INTEGER REFERENCES messages(id)
);
CREATE INDEX messages_due ON messages(status, next_attempt);
-- One first message per step: two outbox passes at once cannot both compose it.
CREATE UNIQUE INDEX messages_step ON messages(escalation_id) WHERE replaces IS NULL;
-- Steps decided before this version had their event recorded when decided and no
-- channel to go out on; the outbox must not send that history now.
UPDATE escalations SET status = 'sent' WHERE status = 'pending';
CREATE INDEX messages_customer ON messages(customer_id);
CREATE TABLE fees (
    item_id       INTEGER NOT NULL REFERENCES items(id),
    ladder        TEXT NOT NULL,
    level         INTEGER NOT NULL,
    amount        TEXT NOT NULL,
    currency      TEXT NOT NULL,
    charged_on    TEXT NOT NULL,
    message_id    INTEGER REFERENCES messages(id),
    PRIMARY KEY (item_id, ladder, level)
);
-- Which payment kept which promise: a payment counts once across a customer's
-- promises, so one transfer cannot keep two promises.
CREATE TABLE promise_payments (
    promise_id INTEGER NOT NULL REFERENCES promises(id),
    payment_id INTEGER NOT NULL REFERENCES payments(id),
    amount     TEXT NOT NULL,
    PRIMARY KEY (promise_id, payment_id)
);
CREATE INDEX promise_payments_payment ON promise_payments(payment_id);
