-- Version 12: postal addresses in parts, and the ERP's word on dunning. A letter goes out only to a customer whose
-- street, postal code and city are known (the country is the customer's): a bare
-- name or a free-text line is not an address a letter can be delivered to. The
-- free-text `address` of version 6 stays for what does not fit the parts (a c/o
-- line, a building) and is printed above the street.
ALTER TABLE customers ADD COLUMN street TEXT;
ALTER TABLE customers ADD COLUMN postal_code TEXT;
ALTER TABLE customers ADD COLUMN city TEXT;
-- The customer's dunning procedure as the ERP has it: NULL when the ERP does not
-- say (the rules alone decide), '' when it has none (not dunned: the ladder stops,
-- cases and worklist entries stay), else the procedure's name.
ALTER TABLE customers ADD COLUMN dunning_procedure TEXT;
