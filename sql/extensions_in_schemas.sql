-- The extensions living in the given schemas (their functions and types are named by schema).
-- Parameters: :schemas (text[]).
SELECT e.extname::text, n.nspname::text
FROM pg_catalog.pg_extension e
JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
WHERE n.nspname = ANY (%(schemas)s)
ORDER BY e.oid;
