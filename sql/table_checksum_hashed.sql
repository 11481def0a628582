-- Row count and an order-independent content checksum of one table, hashing each row as a
-- record (about 3x cheaper than its text form). Fails for a table with a column type that has no
-- hash function (tsvector, json, point, ...): the caller then uses table_checksum.sql.
-- Template: {table} is a psycopg2.sql-quoted schema.table.
SELECT count(*), coalesce(sum(hash_record_extended(t, 0)::numeric), 0)::text
FROM ONLY {table} AS t;
