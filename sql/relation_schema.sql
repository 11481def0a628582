-- The schema of the relation a name resolves to (NULL when there is none).
-- Parameters: :name (a possibly qualified, possibly quoted relation name).
SELECT n.nspname
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = pg_catalog.to_regclass(%(name)s);
