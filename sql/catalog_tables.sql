-- Units of work: every ordinary table and every leaf partition in the chosen schemas.
-- Partitioned parents (relkind 'p') are left out, so no row is copied twice.
-- text_only: some copied column's type has no binary send/receive function (isn's isbn, seg's
-- seg, ...), followed up through domains, arrays, ranges, multiranges and composites: binary
-- COPY cannot carry it, text COPY can.
-- Parameters: :schemas (text[]).
WITH RECURSIVE walk (relid, oid) AS (
    SELECT a.attrelid, a.atttypid
    FROM pg_catalog.pg_attribute a
    JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ANY (%(schemas)s) AND c.relkind = 'r'
      AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
  UNION
    SELECT w.relid, nxt.oid
    FROM walk w
    JOIN pg_catalog.pg_type t ON t.oid = w.oid
    CROSS JOIN LATERAL (
        SELECT t.typbasetype WHERE t.typbasetype <> 0
        UNION ALL SELECT t.typelem WHERE t.typelem <> 0 AND t.typcategory = 'A'
        UNION ALL SELECT r.rngsubtype FROM pg_catalog.pg_range r WHERE r.rngtypid = t.oid
        UNION ALL SELECT r.rngtypid FROM pg_catalog.pg_range r WHERE r.rngmultitypid = t.oid
        UNION ALL SELECT a.atttypid FROM pg_catalog.pg_attribute a
            WHERE a.attrelid = t.typrelid AND t.typrelid <> 0 AND a.attnum > 0
              AND NOT a.attisdropped
    ) AS nxt (oid)
),
textual AS (
    SELECT DISTINCT w.relid
    FROM walk w
    JOIN pg_catalog.pg_type t ON t.oid = w.oid
    WHERE t.typsend = 0 OR t.typreceive = 0
)
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
       c.oid IN (SELECT relid FROM textual) AS text_only
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY (%(schemas)s)
  AND c.relkind = 'r'
ORDER BY n.nspname, c.relname;
