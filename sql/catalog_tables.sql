-- Units of work: every ordinary table and every leaf partition in the chosen schemas.
-- Partitioned parents (relkind 'p') are left out, so no row is copied twice.
-- Parameters: :schemas (text[]).
SELECT n.nspname AS schema_name,
       c.relname AS table_name,
       c.relispartition AS is_partition,
       c.reltuples::bigint AS estimated_rows,  -- -1: never analyzed
       pg_catalog.pg_relation_size(c.oid) AS bytes,
       coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum)
                 FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                   AND a.attgenerated = ''), '{}') AS columns,
       (SELECT a.attname::text
        FROM pg_catalog.pg_index i
        JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = c.oid AND i.indisprimary AND i.indnatts = 1
          AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)) AS int_key,
       -- blocks now: a block added after the snapshot holds no row the snapshot sees
       pg_catalog.pg_relation_size(c.oid)
           / pg_catalog.current_setting('block_size')::bigint AS blocks,
       -- the heap with its TOAST: what a copy of the table reads (wide values live in TOAST)
       pg_catalog.pg_table_size(c.oid) AS stored_bytes
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY (%(schemas)s)
  AND c.relkind = 'r'
ORDER BY n.nspname, c.relname;
