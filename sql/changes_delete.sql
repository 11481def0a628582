-- Live rows whose key the source no longer has: deleted.
-- Template: {live} the live table; {gone} the gone keys g; {on} the key columns equal
-- between g and t.
DELETE FROM ONLY {live} AS t
USING {gone} AS g
WHERE {on};
