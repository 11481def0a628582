-- Materialized views in the chosen schemas, in creation order (dependencies first).
-- Parameters: :schemas (text[]), :only_populated (boolean: only those holding data).
SELECT n.nspname, c.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY (%(schemas)s) AND c.relkind = 'm'
  AND (c.relispopulated OR NOT %(only_populated)s)
ORDER BY c.oid;
