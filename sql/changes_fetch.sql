-- The keys of the rows to fetch from the source: every source row (its key and hash, copied
-- into {keys}) that the live table lacks or holds with another hash; with the source row's
-- hash (pagila_h) and the live one's it replaces (pagila_old_h, NULL for a new row), so that the apply can
-- prove the written rows and the table's checksum after it.
-- Template: {fetch}, {keys} work tables; {live} the live table; {key} its key columns;
-- {on} the key columns equal between s (source) and l (live); {hash} the row hash of t.
CREATE UNLOGGED TABLE {fetch} AS
SELECT {source_key}, s.pagila_h, l.pagila_h AS pagila_old_h
FROM {keys} AS s
LEFT JOIN (SELECT {key}, {hash} AS pagila_h FROM ONLY {live} AS t) AS l ON {on}
WHERE l.pagila_h IS DISTINCT FROM s.pagila_h;
