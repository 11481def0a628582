-- The rows PostgreSQL last counted (pg_class.reltuples: -1 when never counted) in a foreign key's
-- table and in the table it references, to choose how the key's check joins them
-- (fkeys.check_plan). A key that is not there gives no row.
-- Parameters: :table (a quoted table name, e.g. '"public"."rental"'), :name (the key's name).
SELECT fk.reltuples, pk.reltuples
FROM pg_catalog.pg_constraint c
JOIN pg_catalog.pg_class fk ON fk.oid = c.conrelid
JOIN pg_catalog.pg_class pk ON pk.oid = c.confrelid
WHERE c.conrelid = %(table)s::regclass AND c.conname = %(name)s AND c.contype = 'f';
