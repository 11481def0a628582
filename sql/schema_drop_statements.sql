-- The statements that empty a schema of everything but what extensions put there (an extension
-- lives on, and only its owner could drop it): relations, routines, types and collations, each
-- with CASCADE, relations first. Partitions go with their parents, IF EXISTS skips what an
-- earlier CASCADE took.
-- Parameters: :schema.
WITH nsp AS (
    SELECT oid, nspname FROM pg_catalog.pg_namespace WHERE nspname = %(schema)s
), ext AS (
    SELECT classid, objid FROM pg_catalog.pg_depend WHERE deptype = 'e'
)
SELECT statement FROM (
    SELECT 1 AS step, c.oid::bigint AS id, pg_catalog.format('DROP %%s IF EXISTS %%I.%%I CASCADE',
           CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                          WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
           n.nspname, c.relname) AS statement
    FROM pg_catalog.pg_class c JOIN nsp n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND NOT c.relispartition
      AND ('pg_catalog.pg_class'::regclass, c.oid) NOT IN (SELECT classid, objid FROM ext)
  UNION ALL
    SELECT 2, p.oid::bigint, pg_catalog.format('DROP ROUTINE IF EXISTS %%I.%%I(%%s) CASCADE',
           n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid))
    FROM pg_catalog.pg_proc p JOIN nsp n ON n.oid = p.pronamespace
    WHERE ('pg_catalog.pg_proc'::regclass, p.oid) NOT IN (SELECT classid, objid FROM ext)
  UNION ALL
    SELECT 3, t.oid::bigint, pg_catalog.format('DROP TYPE IF EXISTS %%I.%%I CASCADE',
           n.nspname, t.typname)
    FROM pg_catalog.pg_type t JOIN nsp n ON n.oid = t.typnamespace
    WHERE t.typtype IN ('d', 'e', 'r', 'm', 'c') AND t.typcategory <> 'A'
      AND (t.typrelid = 0 OR (SELECT c.relkind FROM pg_catalog.pg_class c
                              WHERE c.oid = t.typrelid) = 'c')
      AND ('pg_catalog.pg_type'::regclass, t.oid) NOT IN (SELECT classid, objid FROM ext)
  UNION ALL
    SELECT 4, co.oid::bigint, pg_catalog.format('DROP COLLATION IF EXISTS %%I.%%I CASCADE',
           n.nspname, co.collname)
    FROM pg_catalog.pg_collation co JOIN nsp n ON n.oid = co.collnamespace
    WHERE ('pg_catalog.pg_collation'::regclass, co.oid) NOT IN (SELECT classid, objid FROM ext)
) AS drops
ORDER BY step, id;
