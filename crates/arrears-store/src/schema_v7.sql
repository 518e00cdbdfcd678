-- Version 7: hardening.
-- Each item carries the dunning level it was last reminded at, so an item that falls
-- due after its customer reached the top of the ladder is still reminded from the
-- first level. Seeded from the steps already decided (each item at the lower of the
-- level it had reached and the step's level).
ALTER TABLE items ADD COLUMN dun_level INTEGER NOT NULL DEFAULT 0;
UPDATE items SET dun_level = COALESCE((
    SELECT MAX(MIN(json_extract(j.value, '$[1]'), e.level))
    FROM escalations e, json_each(e.items) j
    WHERE e.customer_id = items.customer_id
      AND e.status NOT IN ('cancelled', 'superseded')
      AND json_extract(j.value, '$[0]') = items.id), 0)
WHERE status = 'open' AND customer_id IN (SELECT customer_id FROM escalations);
-- The outbox looks up payments per item.
CREATE INDEX payments_item ON payments(item_id);
-- An item another one names as its original (split or re-posting) is 'replaced': its
-- debt is counted once, on the new documents, even before the ERP clears it.
CREATE INDEX items_original ON items(original_document) WHERE original_document IS NOT NULL;
UPDATE customers SET dirty = dirty + 1 WHERE id IN (
    SELECT o.customer_id FROM items o WHERE o.status = 'open' AND EXISTS (
        SELECT 1 FROM items r WHERE r.original_document = o.document_no
          AND r.customer_id = o.customer_id AND r.id <> o.id));
UPDATE items SET status = 'replaced' WHERE status = 'open' AND EXISTS (
    SELECT 1 FROM items r WHERE r.original_document = items.document_no
      AND r.customer_id = items.customer_id AND r.id <> items.id);
-- A counter that moves whenever a customer is marked changed, and with each run the
-- value it started from: the daemon runs again only for changes no run has seen.
-- (Comparing "are there dirty customers" instead loops when a customer cannot be
-- evaluated and so stays dirty: every commit, the daemon's own runs included, would
-- start another run.)
CREATE TABLE store_changes (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT INTO store_changes(id, seq) VALUES (1, 1);
CREATE TRIGGER customers_marked_changed AFTER UPDATE OF dirty ON customers
    WHEN NEW.dirty > OLD.dirty
BEGIN
    UPDATE store_changes SET seq = seq + 1 WHERE id = 1;
END;
CREATE TRIGGER customers_added AFTER INSERT ON customers
    WHEN NEW.dirty <> 0
BEGIN
    UPDATE store_changes SET seq = seq + 1 WHERE id = 1;
END;
ALTER TABLE runs ADD COLUMN changes_seen INTEGER;
-- Every outbox pass looks for the steps still pending, a few among all ever decided.
CREATE INDEX escalations_pending ON escalations(id) WHERE status = 'pending';
