-- The relation a name resolves to: its schema, its name and its kind (no row when none).
-- Parameters: :name (a possibly qualified, possibly quoted relation name).
SELECT n.nspname, c.relname, c.relkind
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = pg_catalog.to_regclass(%(name)s);
