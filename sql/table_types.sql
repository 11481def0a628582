-- Per table in the chosen schemas, what its column types ask of a copy and of a checksum; the
-- types are followed through domains, arrays, ranges, multiranges and composites.
--   text_only: a copied (not generated) column's type has no binary send/receive function
--     (isn's isbn13, seg's seg): binary COPY cannot carry it, text COPY can.
--   hash_by_text: a column's type hashes an oid that differs between two databases (an enum
--     hashes its label's oid, a reg* type the object's): rows are checksummed by their text.
-- Parameters: :schemas (text[]).
WITH RECURSIVE walk (relid, copied, oid) AS (
    SELECT a.attrelid, a.attgenerated = '', a.atttypid
    FROM pg_catalog.pg_attribute a
    JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ANY (%(schemas)s) AND c.relkind = 'r'
      AND a.attnum > 0 AND NOT a.attisdropped
  UNION
    SELECT w.relid, w.copied, nxt.oid
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
)
SELECT n.nspname,
       c.relname,
       bool_or(w.copied AND (t.typsend = 0 OR t.typreceive = 0)) AS text_only,
       bool_or(t.typtype = 'e'
               OR (t.typnamespace = 'pg_catalog'::regnamespace AND t.typname LIKE 'reg%%'))
           AS hash_by_text
FROM walk w
JOIN pg_catalog.pg_type t ON t.oid = w.oid
JOIN pg_catalog.pg_class c ON c.oid = w.relid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
GROUP BY n.nspname, c.relname;
