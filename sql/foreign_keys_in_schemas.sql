-- Foreign keys defined on tables of the given schemas (not the copies a partition inherits), with
-- their definitions, in the shape foreign_keys_touching.sql gives.
-- Parameters: :schemas (text[]).
SELECT con.conrelid::regclass::text AS on_table, con.conname::text,
       pg_catalog.pg_get_constraintdef(con.oid) AS definition
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_namespace nsp ON nsp.oid = con.connamespace
WHERE con.contype = 'f' AND con.conparentid = 0 AND nsp.nspname = ANY (%(schemas)s)
ORDER BY 1, 2;
