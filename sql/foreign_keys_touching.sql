-- Foreign keys on, or pointing at, the given tables (for a --tables run on an existing target).
-- Parameters: :tables (text[] of regclass names, e.g. 'public.rental').
SELECT DISTINCT con.conrelid::regclass::text AS on_table, con.conname::text,
       pg_catalog.pg_get_constraintdef(con.oid) AS definition
FROM pg_catalog.pg_constraint con
WHERE con.contype = 'f' AND con.conparentid = 0
  AND (con.conrelid = ANY (%(tables)s::regclass[]) OR con.confrelid = ANY (%(tables)s::regclass[]));
