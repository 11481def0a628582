-- Foreign keys on, or pointing at, the given tables (for a --tables run on an existing target).
-- Read with search_path = pg_catalog, so every name in a definition is qualified.
-- Parameters: :tables (text[] of quoted regclass names, e.g. 'public.rental').
SELECT DISTINCT nsp.nspname::text, rel.relname::text, con.conname::text,
       pg_catalog.pg_get_constraintdef(con.oid) AS definition, con.convalidated
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class rel ON rel.oid = con.conrelid
JOIN pg_catalog.pg_namespace nsp ON nsp.oid = rel.relnamespace
WHERE con.contype = 'f' AND con.conparentid = 0
  AND (con.conrelid = ANY (%(tables)s::regclass[]) OR con.confrelid = ANY (%(tables)s::regclass[]));
