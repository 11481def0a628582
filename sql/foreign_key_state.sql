-- Whether a foreign key exists on the target (and is validated), and the kind of its table.
-- convalidated is NULL when the key is missing; relkind 'p' marks a partitioned table.
-- Parameters: :name, :table (a regclass name, e.g. 'public.rental').
SELECT con.convalidated, rel.relkind
FROM pg_catalog.pg_class rel
LEFT JOIN pg_catalog.pg_constraint con
       ON con.conrelid = rel.oid AND con.conname = %(name)s AND con.contype = 'f'
WHERE rel.oid = %(table)s::regclass;
