-- The leaf partitions of one partitioned table, at any depth.
-- Parameters: :schema, :table.
SELECT n.nspname, c.relname
FROM pg_catalog.pg_partition_tree(format('%%I.%%I', %(schema)s, %(table)s)::regclass) t
JOIN pg_catalog.pg_class c ON c.oid = t.relid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE t.isleaf
ORDER BY 1, 2;
