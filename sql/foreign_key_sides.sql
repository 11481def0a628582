-- A foreign key's two tables, to choose how its check joins them (fkeys.check_plan): the rows
-- PostgreSQL last counted in the key's table and in the referenced one (pg_class.reltuples: -1
-- when never counted), the bytes of the referenced table and of the unique index the key uses,
-- and the server's effective_cache_size in bytes. A key that is not there gives no row.
-- Parameters: :table (a quoted table name, e.g. '"public"."rental"'), :name (the key's name).
SELECT fk.reltuples, pk.reltuples,
       pg_catalog.pg_relation_size(c.confrelid) + pg_catalog.pg_relation_size(c.conindid),
       pg_catalog.pg_size_bytes(pg_catalog.current_setting('effective_cache_size'))
FROM pg_catalog.pg_constraint c
JOIN pg_catalog.pg_class fk ON fk.oid = c.conrelid
JOIN pg_catalog.pg_class pk ON pk.oid = c.confrelid
WHERE c.conrelid = %(table)s::regclass AND c.conname = %(name)s AND c.contype = 'f';
