-- The keys of the live rows the source no longer has (to delete), with their hashes.
-- Template: {gone}, {keys} work tables; {live} the live table; {live_key} its key columns
-- of t; {on} the key columns equal between s (source) and t (live); {hash} the row hash of t;
-- {also} empty, or a further condition on t (the buckets of keys {keys} holds).
CREATE UNLOGGED TABLE {gone} AS
SELECT {live_key}, {hash} AS pagila_h
FROM ONLY {live} AS t
WHERE NOT EXISTS (SELECT 1 FROM {keys} AS s WHERE {on}){also};
