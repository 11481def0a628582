-- Whether a foreign key exists on the target (and is validated), and the kind of its table.
-- convalidated is NULL when the key is missing; relkind 'p' marks a partitioned table.
-- Parameters: :name, :schema, :table.
SELECT con.convalidated, rel.relkind
FROM pg_catalog.pg_class rel
JOIN pg_catalog.pg_namespace nsp ON nsp.oid = rel.relnamespace
LEFT JOIN pg_catalog.pg_constraint con
       ON con.conrelid = rel.oid AND con.conname = %(name)s AND con.contype = 'f'
WHERE nsp.nspname = %(schema)s AND rel.relname = %(table)s;
