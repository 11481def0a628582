-- Whether a table's rows must be checksummed by their text form: some column's type hashes an
-- oid that differs between two databases (an enum hashes its label's oid, a reg* type the
-- object's), or has no hash at all. Types are followed through domains, arrays, ranges,
-- multiranges and composites (the same walk as catalog_tables.sql's, another question).
-- Parameters: :schema, :table.
WITH RECURSIVE types (oid) AS (
    SELECT a.atttypid
    FROM pg_catalog.pg_attribute a
    JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND a.attnum > 0 AND NOT a.attisdropped
  UNION
    SELECT nxt.oid
    FROM types tt
    JOIN pg_catalog.pg_type t ON t.oid = tt.oid
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
SELECT EXISTS (
    SELECT 1
    FROM types tt
    JOIN pg_catalog.pg_type t ON t.oid = tt.oid
    WHERE t.typtype = 'e'
       OR (t.typnamespace = 'pg_catalog'::regnamespace AND t.typname LIKE 'reg%%')
);
