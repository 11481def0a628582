-- Row count and an order-independent content checksum of one table (without its partitions).
-- Each row's text form is hashed; the sum is exact (sum(bigint) is numeric), so equal tables
-- give equal sums.
-- Template: {table} is a psycopg2.sql-quoted schema.table; {where} empty, or a WHERE clause
-- that keeps one key range (a unit's rows). Run with TimeZone=UTC on both sides.
SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0)::text
FROM ONLY {table} AS t{where};
