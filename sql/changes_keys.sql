-- What applying changes in place needs to know of each table in the chosen schemas (read on
-- the target, whose live tables the changes are applied to; the proof has shown both sides'
-- schemas equal): its row key, the primary key or else a unique index on NOT NULL columns
-- without expressions or predicate (NULL when it has none: it cannot be changed in place);
-- the key columns' types (to cast key values sent as text); the columns an UPDATE may not set
-- (identity GENERATED ALWAYS); whether rules rewrite its DML or row security is forced on its
-- owner (then it is not changed in place); and its partition tree's root, for ordering by
-- foreign keys (a plain table is its own root).
-- Parameters: :schemas (text[]).
SELECT n.nspname AS schema_name,
       c.relname AS table_name,
       k.cols AS key_columns,
       k.types AS key_types,
       coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum)
                 FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                   AND a.attidentity = 'a'), '{}') AS always_identity,
       EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r WHERE r.ev_class = c.oid) AS has_rules,
       c.relforcerowsecurity AS forced_rls,
       rn.nspname AS root_schema,
       rc.relname AS root_name
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_class rc ON rc.oid = coalesce(pg_catalog.pg_partition_root(c.oid), c.oid)
JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace
LEFT JOIN LATERAL (
    SELECT array_agg(a.attname::text ORDER BY x.ord) AS cols,
           array_agg(pg_catalog.format_type(a.atttypid, a.atttypmod) ORDER BY x.ord) AS types
    FROM (SELECT i.indkey
          FROM pg_catalog.pg_index i
          WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid
            AND i.indpred IS NULL AND i.indexprs IS NULL
            AND NOT EXISTS (SELECT 1
                            FROM unnest(i.indkey::int2[]) AS ik(attnum)
                            JOIN pg_catalog.pg_attribute ia
                              ON ia.attrelid = c.oid AND ia.attnum = ik.attnum
                            WHERE NOT ia.attnotnull)
          ORDER BY i.indisprimary DESC, i.indnatts, i.indexrelid
          LIMIT 1) AS best,
         unnest(best.indkey::int2[]) WITH ORDINALITY AS x(attnum, ord)
    JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = x.attnum
) AS k ON true
WHERE n.nspname = ANY (%(schemas)s)
  AND c.relkind = 'r'
ORDER BY n.nspname, c.relname;
