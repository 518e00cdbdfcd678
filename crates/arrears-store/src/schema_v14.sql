-- Version 14: what each item owed on each day. A row is the item's open amount and
-- status from `on_date` on, written when either changes, with the cause; an item
-- without rows is still as it was born (open, its original amount, since its
-- document date). The latest row written among those dated on or before a day is
-- the item's state that day: a payment learned late, dated by its value date,
-- outranks what was known before. `cleared_on`/`cleared_by`: when and how the item
-- left collection (NULL while open).
ALTER TABLE items ADD COLUMN cleared_on TEXT;
ALTER TABLE items ADD COLUMN cleared_by TEXT;
CREATE TABLE item_history (
    id          INTEGER PRIMARY KEY,
    item_id     INTEGER NOT NULL REFERENCES items(id),
    on_date     TEXT NOT NULL,
    open_amount TEXT NOT NULL,
    status      TEXT NOT NULL,
    cause       TEXT NOT NULL
);
CREATE INDEX item_history_item ON item_history(item_id);
-- What a store held before: one row for each item no longer as born, dated by the
-- closing of its case (a cleared item), else its last linked payment, else its
-- document date.
INSERT INTO item_history(item_id, on_date, open_amount, status, cause)
SELECT i.id,
       COALESCE(CASE WHEN i.status <> 'open'
                     THEN (SELECT MAX(c.closed_on) FROM cases c WHERE c.item_id = i.id) END,
                (SELECT MAX(p.value_date) FROM payments p WHERE p.item_id = i.id),
                i.document_date),
       i.open_amount, i.status, 'before_history'
FROM items i WHERE i.status <> 'open' OR i.open_amount <> i.original_amount;
UPDATE items SET cleared_on = (SELECT h.on_date FROM item_history h WHERE h.item_id = items.id),
                 cleared_by = 'before_history'
WHERE status <> 'open';
