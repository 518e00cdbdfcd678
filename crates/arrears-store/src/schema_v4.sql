-- Version 4: promises on one or more items, with the channel and the person who made
-- them, and what the judgement found (amount counted, the day it was reached) so the
-- promise history can say how late customers pay what they promise.
ALTER TABLE promises ADD COLUMN channel TEXT;
ALTER TABLE promises ADD COLUMN contact TEXT;
ALTER TABLE promises ADD COLUMN paid TEXT;
ALTER TABLE promises ADD COLUMN paid_on TEXT;
CREATE TABLE promise_items (
    promise_id INTEGER NOT NULL REFERENCES promises(id),
    item_id    INTEGER NOT NULL REFERENCES items(id),
    PRIMARY KEY (promise_id, item_id)
);
CREATE INDEX promise_items_item ON promise_items(item_id);
INSERT INTO promise_items(promise_id, item_id)
    SELECT p.id, c.item_id FROM promises p JOIN cases c ON c.id = p.case_id;
