-- The tables and views readers query in the given (live) schemas (LOCK TABLE takes no materialized
-- view), for the switch to lock them all at
-- once: a statement that resolved one of them before the switch then waits and resolves its
-- names again after it, so it never mixes the previous copy with the new one.
-- Parameters: :schemas (text[]).
SELECT pg_catalog.format('%%I.%%I', n.nspname, c.relname)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY (%(schemas)s) AND c.relkind IN ('r', 'p', 'v')
  AND NOT c.relispartition
ORDER BY c.oid;
