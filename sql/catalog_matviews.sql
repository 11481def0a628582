-- Materialized views in the chosen schemas, each after every materialized view it reads
-- (directly or through views), whatever their creation order: a view can be replaced to read
-- a matview created later, and refreshing a reader before what it reads fails.
-- Parameters: :schemas (text[]), :only_populated (boolean: only those holding data).
WITH RECURSIVE chosen AS (
    SELECT c.oid, n.nspname, c.relname, c.relispopulated
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ANY (%(schemas)s) AND c.relkind = 'm'
),
reads (mv, rel) AS (  -- the relations each matview's query reads, followed through views
    SELECT r.ev_class, d.refobjid
    FROM pg_catalog.pg_rewrite r
    JOIN pg_catalog.pg_depend d
      ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid
     AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid <> r.ev_class
    WHERE r.ev_class IN (SELECT oid FROM chosen)
  UNION
    SELECT rd.mv, d.refobjid
    FROM reads rd
    JOIN pg_catalog.pg_class v ON v.oid = rd.rel AND v.relkind = 'v'
    JOIN pg_catalog.pg_rewrite r ON r.ev_class = v.oid
    JOIN pg_catalog.pg_depend d
      ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid
     AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid <> v.oid
),
levels (mv, level) AS (  -- 0 for a matview that reads none; else one more than what it reads
    SELECT oid, 0 FROM chosen
  UNION
    SELECT rd.mv, l.level + 1
    FROM levels l
    JOIN reads rd ON rd.rel = l.mv AND rd.mv <> l.mv
)
SELECT c.nspname, c.relname
FROM chosen c
JOIN levels l ON l.mv = c.oid
WHERE c.relispopulated OR NOT %(only_populated)s
GROUP BY c.oid, c.nspname, c.relname
ORDER BY max(l.level), c.oid;
