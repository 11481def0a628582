-- The keys of the rows to fetch from the source: every source row (its key and hash, copied
-- into {keys}) that the live table lacks or holds with another hash.
-- Template: {fetch}, {keys} work tables; {live} the live table; {key} its key columns;
-- {on} the key columns equal between s (source) and l (live); {hash} the row hash of t.
CREATE UNLOGGED TABLE {fetch} AS
SELECT {source_key}
FROM {keys} AS s
LEFT JOIN (SELECT {key}, {hash} AS h FROM ONLY {live} AS t) AS l ON {on}
WHERE l.h IS DISTINCT FROM s.h;
