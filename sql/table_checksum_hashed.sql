-- Row count and an order-independent content checksum of one table, hashing each row as a
-- record (about 3x cheaper than its text form). Fails for a table with a column type that has no
-- hash function (tsvector, json, point, ...): the caller then uses table_checksum.sql.
-- sum(bigint) is exact (a 128-bit accumulator, numeric result): the same value as summing the
-- hashes as numeric, at a fraction of the cost.
-- Template: {table} is a psycopg2.sql-quoted schema.table; {where} empty, or a WHERE clause
-- that keeps one key range (a unit's rows).
SELECT count(*), coalesce(sum(hash_record_extended(t, 0)), 0)::text
FROM ONLY {table} AS t{where};
