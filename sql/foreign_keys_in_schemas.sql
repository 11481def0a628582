-- Foreign keys defined on tables of the given schemas (not the copies a partition inherits), with
-- their definitions and whether they are validated, in the shape foreign_keys_touching.sql gives.
-- Read with search_path = pg_catalog (as pg_dump does), so every name in a definition is
-- qualified whatever the database's own search_path.
-- Parameters: :schemas (text[]).
SELECT nsp.nspname::text, rel.relname::text, con.conname::text,
       pg_catalog.pg_get_constraintdef(con.oid) AS definition, con.convalidated
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class rel ON rel.oid = con.conrelid
JOIN pg_catalog.pg_namespace nsp ON nsp.oid = rel.relnamespace
WHERE con.contype = 'f' AND con.conparentid = 0 AND nsp.nspname = ANY (%(schemas)s)
ORDER BY 1, 2, 3;
