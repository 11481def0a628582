-- Every sequence in the chosen schemas (owned, identity and free-standing ones).
-- Parameters: :schemas (text[]).
SELECT n.nspname, c.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY (%(schemas)s) AND c.relkind = 'S'
ORDER BY 1, 2;
