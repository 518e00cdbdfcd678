-- Version 11: the change log. Every write appends what it changed, in the write's
-- own transaction: a customer as a whole (its data, promises, disputes, holds,
-- payments, anything a run reads of it), or one item of it. The daemon's resident
-- portfolio follows the log from where it last read it and reloads a customer
-- whole only when one of its entries says so; for the rest it reloads the items
-- named. `seq` never goes back or is used twice (AUTOINCREMENT), even after runs
-- prune the entries they have read. A customer's change counter (`dirty`) follows
-- from its entries.
CREATE TABLE changes (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id INTEGER NOT NULL,
    item_id     INTEGER
);
-- Runs recorded the counter they loaded at (`runs.changes_seen`): the log goes on
-- from it.
INSERT INTO sqlite_sequence(name, seq) SELECT 'changes', seq FROM store_changes;
DROP TRIGGER customers_marked_changed;
DROP TRIGGER customers_added;
DROP TABLE store_changes;
-- The customer's newest entry: how the log marks it, and how a mark made any other
-- way is told apart.
ALTER TABLE customers ADD COLUMN last_change INTEGER;
CREATE TRIGGER changes_mark_customer AFTER INSERT ON changes
BEGIN
    UPDATE customers SET dirty = dirty + 1, last_change = NEW.seq WHERE id = NEW.customer_id;
END;
CREATE TRIGGER customers_added AFTER INSERT ON customers
    WHEN NEW.dirty <> 0
BEGIN
    INSERT INTO changes(customer_id) VALUES (NEW.id);
END;
-- A customer marked changed without an entry would be a change the daemon never
-- hears of: only the log may mark customers.
CREATE TRIGGER customers_marked_only_by_the_log BEFORE UPDATE OF dirty ON customers
    WHEN NEW.dirty > OLD.dirty AND NEW.last_change IS OLD.last_change
BEGIN
    SELECT RAISE(ABORT, 'a customer is marked changed only by an entry in the change log');
END;
