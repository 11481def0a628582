-- Every relation name in the chosen schemas with its kind, to refuse names that are not tables.
-- Parameters: :schemas (text[]).
SELECT n.nspname, c.relname, c.relkind
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY (%(schemas)s)
  AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'i', 'I', 'c');
